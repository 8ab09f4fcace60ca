"""The table rows of a report, as the table printers read them: from the report's JSON (its
``cells``: aggregated by ``python -m fastreg.report``) when it has them, else (the archived
reports, written before ``cells`` existed and whose runs are gone) from its Markdown tables.

``rows(report_md, section, ncols)`` gives the rows of one Markdown table as lists of cell
strings, formatted as the report formats them, whichever the source.
"""
from __future__ import annotations

import json
from pathlib import Path

from fastreg.lab.report import _f

SECTIONS = {"## Test accuracy": 9, "## Paired difference to the baseline": 8, "## Paired difference to bank init": 8}


def _section(txt: str, title: str) -> str:
    return txt.split(title, 1)[1].split("\n## ", 1)[0] if title in txt else ""


def _md_rows(section: str, ncols: int) -> list[list[str]]:
    out = []
    for line in section.splitlines():
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(c) == ncols and c[0].isdigit():
            out.append(c)
    return out


def _ms(mean, std, spec: str) -> str:
    return _f(mean, spec) + (f" ± {_f(std, spec)}" if std is not None else "")


def _json_rows(cells: list[dict], title: str) -> list[list[str]]:
    out = []
    for c in cells:
        head = [str(c["train_size"]), c["label"], c["reg_layers"]]
        if title == "## Test accuracy":
            m, s = c["metrics"], c.get("metrics_std", {})
            metric = lambda k, spec: _ms(m[k], s.get(k), spec) if k in m else "—"  # noqa: E731
            out.append(head + [str(len(c["seeds"])), ",".join(map(str, c["seeds"])),
                               _ms(c["acc_mean"], c["acc_std"], ".2f"),
                               metric("auc", ".3f"), metric("mmd", ".4f"), metric("lfe", ".3f")])
            continue
        d = c["paired"].get("baseline" if title.endswith("baseline") else "bankinit")
        if d is None:
            continue
        own = d["vs"] == c["label"].replace(c["method"], "baseline" if title.endswith("baseline") else "bankinit", 1) \
            and d["vs_layers"] == c["reg_layers"]
        vs = "" if own else f" (vs {d['vs']}{'' if d['vs_layers'] == c['reg_layers'] else ', ' + d['vs_layers']})"
        ci = f"[{_f(d['lo'], '+.2f')}, {_f(d['hi'], '+.2f')}]" if d["lo"] is not None else "—"
        out.append([head[0], head[1], head[2] + vs, f"{','.join(map(str, d['seeds']))} ({len(d['seeds'])})",
                    _f(d["mean"], "+.2f"), ci, _f(d["p"], ".3g"), d["test"]])
    return out


def rows(report_md: str | Path, title: str, ncols: int | None = None) -> list[list[str]]:
    """The rows of table ``title`` (a section heading) of a report."""
    report_md = Path(report_md)
    js = report_md.with_suffix(".json")
    if title in SECTIONS and js.exists():
        cells = json.loads(js.read_text()).get("cells")
        if cells is not None:
            return _json_rows(cells, title)
    return _md_rows(_section(report_md.read_text(), title), ncols or SECTIONS[title])
