"""``python -m fastreg.collect``: the entry point of ``fastreg.lab.collect`` (the lab, apart from the library)."""
from .lab.cli import entry
from .lab.collect import main

if __name__ == "__main__":
    entry(main)
