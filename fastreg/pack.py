"""``python -m fastreg.pack``: the entry point of ``fastreg.lab.pack`` (the lab, apart from the library)."""
from .lab.cli import entry
from .lab.pack import main

if __name__ == "__main__":
    entry(main)
