"""``python -m fastreg.collect``: the entry point of ``fastreg.lab.collect`` (the lab, apart from the library)."""
from .lab.collect import main

if __name__ == "__main__":
    from .distributed import exit_process
    from .lab.cli import run_main
    exit_process(run_main(main))
