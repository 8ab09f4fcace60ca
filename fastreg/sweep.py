"""``python -m fastreg.sweep``: the entry point of ``fastreg.lab.sweep`` (the lab, apart from the library)."""
from .lab.cli import entry
from .lab.sweep import main

if __name__ == "__main__":
    entry(main)
