"""Allow `python -m unifylab`."""

from unifylab.cli import entry

entry()
