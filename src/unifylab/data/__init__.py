"""Tasks and datasets built from worlds: dataset I/O, task generators, GenEval-style metadata."""
