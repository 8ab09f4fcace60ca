"""``python -m fastreg.train``: the entry point of ``fastreg.lab.train`` (the lab, apart from the library)."""
from .lab.cli import entry
from .lab.train import main

if __name__ == "__main__":
    entry(main)
