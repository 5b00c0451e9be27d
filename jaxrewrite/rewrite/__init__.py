"""Rewriting one layer of a generator: edit files, statistics, keys, goals and the weight update."""
