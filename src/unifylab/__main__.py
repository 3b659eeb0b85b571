"""Allow `python -m unifylab` (guarded: the study's spawned workers import this module again)."""

from unifylab.cli import entry

if __name__ == "__main__":
    entry()
