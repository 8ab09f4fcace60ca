"""``python -m fastreg.sweep``: the entry point of ``fastreg.lab.sweep`` (the lab, apart from the library)."""
from .lab.sweep import main

if __name__ == "__main__":
    from .distributed import exit_process
    from .lab.cli import run_main
    exit_process(run_main(main))
