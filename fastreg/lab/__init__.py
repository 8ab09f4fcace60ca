"""The lab: fastreg's experiment tooling, run with ``python -m`` (train, collect, sweep, report,
pack) and what only they use (data, training loop, run folders, settings). The library, what
``from fastreg import ...`` gives, never imports it (tests/test_structure.py)."""
