"""``python -m fastreg.report``: the entry point of ``fastreg.lab.report`` (the lab, apart from the library)."""
from .lab.cli import entry
from .lab.report import main

if __name__ == "__main__":
    entry(main)
