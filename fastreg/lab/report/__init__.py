"""The report (``python -m fastreg.report``): run folders analysed into records, each protocol
on its own (``analysis``), the records rendered as Markdown tables (``tables``) and figures
(``figures``) under a header (``header``), with the bank references the filter metrics read
(``references``); ``rows`` reads a report's per-run rows back as runs, for ``archive`` (an old
report's records rebuilt) and ``kept`` (``--keep``: rows counted beside run folders).

Its public face is below; the modules share nothing private with each other.
"""
from .analysis import Cell, make_cells, paired, report_records, uses_bank
from .command import build_parser, main
from .rows import split_label
from .tables import cell_tables, report_tables

__all__ = ["Cell", "build_parser", "cell_tables", "main", "make_cells", "paired", "rebuild", "report_records",
           "report_tables", "split_label", "uses_bank"]


def __getattr__(name: str):
    """``rebuild`` from ``archive``, imported when first asked for, so that
    ``python -m fastreg.lab.report.archive`` runs a module not yet imported."""
    if name == "rebuild":
        from . import archive
        return getattr(archive, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
