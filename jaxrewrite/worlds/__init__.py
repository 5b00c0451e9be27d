"""Procedural worlds with known semantics, for measuring what an edit changes."""
