"""``python -m fastreg.lab.report``: the same command as ``python -m fastreg.report``."""
from ..cli import entry
from . import main

if __name__ == "__main__":
    entry(main)
