"""``python -m fastreg.train``: the entry point of ``fastreg.lab.train`` (the lab, apart from the library)."""
from .lab.train import main

if __name__ == "__main__":
    from .distributed import exit_process
    from .lab.cli import run_main
    exit_process(run_main(main))
