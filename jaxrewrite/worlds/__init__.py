"""Procedural worlds with known semantics, for measuring what an edit changes."""

# The rows of the section 5.1 table: name -> (update method, rank, single context key).
VARIANTS = {
    "ours": ("projected", 1, False),
    "lambda": ("lambda", 1, False),
    "closed": ("closed", 1, False),
    "full-rank": ("projected", "full", False),
    "single-key": ("projected", 1, True),
    "finetune": ("finetune", None, False),
}
