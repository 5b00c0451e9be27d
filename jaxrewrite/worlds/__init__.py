"""Procedural worlds with known semantics, for measuring what an edit changes: the evaluation
layer on top of the library (the library never imports it)."""
