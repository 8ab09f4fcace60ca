"""Every committed report is its records rendered: the cell tables of each docs/reports/*.md are
what ``fastreg.lab.report.tables`` renders from the JSON beside it (the records the docs' table printers
read), and those records come back from the report's per-run rows. The archived reports, whose
run folders are gone, got their records that way (``python -m fastreg.lab.report.archive``)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastreg.lab.report import rebuild, split_label
from fastreg.lab.report import cell_tables

ROOT = Path(__file__).resolve().parents[2]
REPORTS = sorted(p for p in (ROOT / "docs" / "reports").glob("*.json") if "runs" in json.loads(p.read_text()))


def _table_lines(text: str) -> list[str]:
    """Headings and table rows of a report's cell tables (from its accuracy table to its
    filter-metric reference points); the prose under a heading is left out, since older
    reports worded it differently."""
    block = text.split("## Test accuracy", 1)[1].split("\n## Filter-metric reference points", 1)[0]
    return [line for line in block.splitlines() if line.startswith(("|", "## "))]


def test_every_report_with_runs_is_checked():
    assert len(REPORTS) >= 8 and all(p.with_suffix(".md").is_file() for p in REPORTS)


@pytest.mark.parametrize("js", REPORTS, ids=[p.stem for p in REPORTS])
def test_report_tables_are_its_records_rendered(js):
    data = json.loads(js.read_text())
    assert data["format"] == 2
    rendered = _table_lines("\n".join(cell_tables(data)))
    assert len(rendered) > 4
    assert rendered == _table_lines(js.with_suffix(".md").read_text())


@pytest.mark.parametrize("js", REPORTS, ids=[p.stem for p in REPORTS])
def test_report_records_come_back_from_its_runs(js):
    data = json.loads(js.read_text())
    banks = list(dict.fromkeys(b for p in data["bank_pairs"] for b in (p["older"], p["newer"])))
    again = rebuild({"runs": data["runs"]}, banks, data["refs"])     # from the rows alone: labels, not records
    assert json.dumps(again, sort_keys=True) == json.dumps({k: v for k, v in data.items() if k != "runs"},
                                                          sort_keys=True)


def _archive(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastreg.lab.report.archive", *args], capture_output=True,
                          text=True, cwd=ROOT)


def _row(run: str, label: str, seed: int, acc: float) -> dict:
    return {"run": run, "train_size": 100, "method": label, "reg_layers": "conv1", "seed": seed, "status": "ok",
            "test_acc": acc, "auc": 0.6}


def test_archive_rebuilds_an_old_report_and_refuses_bad_input_in_one_line(tmp_path):
    rows = [_row(f"s/n100/{m}/s{s}", label, s, acc + s / 100)
            for m, label, acc in (("baseline", "baseline [width=0.5]", 0.30), ("adv1", "adv1 [bank=b1, width=0.5]", 0.32),
                                  ("adv1", "adv1 [bank=b2, width=0.5]", 0.33))
            for s in (0, 1, 2)]
    rows[4]["test_acc"] += 0.005                               # the differences are not all equal
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"runs": rows}))
    before = old.read_bytes()
    r = _archive(str(old))                                    # two banks: which is the newer?
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--banks" in r.stderr
    assert old.read_bytes() == before
    r = _archive(str(old), "--banks", "b1,b2")
    assert r.returncode == 0, r.stderr
    data = json.loads(old.read_text())
    assert data["format"] == 2 and data["refs"] == ["baseline"] and data["runs"] == rows
    adv = next(c for c in data["cells"] if c["label"] == "adv1 [bank=b1, width=0.5]")
    assert adv["extra"] == {"bank": "b1", "width": 0.5} and adv["paired"]["baseline"]["seeds"] == [0, 1, 2]
    assert adv["paired"]["baseline"]["mean"] == pytest.approx((2 + 2.5 + 2) / 3)
    assert adv["paired"]["baseline"]["vs"] == "baseline [width=0.5]"
    (pair,) = data["bank_pairs"]
    assert (pair["newer"], pair["older"]) == ("b2", "b1") and pair["mean"] == pytest.approx((1 + 0.5 + 1) / 3)
    before = old.read_bytes()
    for args, says in (([str(old)], "pass --force"), ([str(tmp_path / "none.json")], "not a readable JSON"),
                       ([str(tmp_path)], "not a readable JSON")):
        r = _archive(*args)
        assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert says in r.stderr
    (tmp_path / "x.json").write_text(json.dumps({"runs": [{**rows[0], "method": "adv1 [speed=fast]"}]}))
    r = _archive(str(tmp_path / "x.json"))
    assert r.returncode == 2 and "'speed=fast' is not a setting" in r.stderr
    assert old.read_bytes() == before


def test_archive_refuses_rows_it_cannot_count_in_one_line(tmp_path):
    ok = _row("s/n100/baseline/s0", "baseline", 0, 0.3)
    for runs, says in (([{}], "run row 0: not a report's row"), ([1], "run row 0"),
                       ([ok, {**ok, "seed": 1, "test_acc": None}], "run row 1 (s/n100/baseline/s0): counted"),
                       ([], "no counted runs"), ([{**ok, "status": "failed"}], "no counted runs")):
        f = tmp_path / "r.json"
        f.write_text(json.dumps({"runs": runs}))
        before = f.read_bytes()
        r = _archive(str(f))
        assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert says in r.stderr and f.read_bytes() == before
    rows = [ok, _row("s/n100/bankinit/s0", "bankinit", 0, 0.35), _row("s/n100/adv1/s0", "adv1", 0, 0.32),
            {**ok, "run": "x", "method": "?? [odd]", "status": "failed"}]    # a failed row is not parsed
    f.write_text(json.dumps({"runs": rows}))
    r = _archive(str(f), "--refs", "bankinit")               # the baseline comes first all the same
    assert r.returncode == 0, r.stderr
    data = json.loads(f.read_text())
    assert data["refs"] == ["baseline", "bankinit"] and data["runs"] == rows
    adv = next(c for c in data["cells"] if c["method"] == "adv1")
    assert adv["paired"]["baseline"]["mean"] == pytest.approx(2.0) and adv["paired"]["bankinit"]["mean"] == pytest.approx(-3.0)


def test_labels_with_structured_values_read_back():
    label = "adv1 [bank_map={'conv1': ['a', 'b']}, width=0.5, amp=True, classes=5,6,7, fake_max=None]"
    method, variant, extra = split_label(label, {})
    assert method == "adv1" and variant == label[6:-1]
    assert extra == {"bank_map": {"conv1": ["a", "b"]}, "width": 0.5, "amp": True, "classes": "5,6,7",
                     "fake_max": None}


PRINTERS = ROOT / "docs" / "scripts"


def test_printers_refuse_a_report_without_records_or_with_cells_they_would_merge(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"runs": []}))
    cell = {"train_size": 100, "method": "adv1", "reg_layers": "conv1", "extra": {"width": 0.5}, "seeds": [0],
            "acc_mean": 30.0, "acc_std": None, "metrics": {}, "paired": {}}
    two = [{**cell, "label": "adv1 [width=0.5, lr=0.1]"}, {**cell, "label": "adv1 [width=0.5, lr=0.2]"}]
    (tmp_path / "two.json").write_text(json.dumps({"format": 2, "cells": two, "runs": []}))
    for script, report, says in (("adversarial_table.py", "old.md", "no cell records"),
                                 ("priors_table.py", "old.md", "no cell records"),
                                 ("adversarial_table.py", "two.md", "land in one table cell")):
        r = subprocess.run([sys.executable, str(PRINTERS / script), str(tmp_path / report)], capture_output=True,
                           text=True)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and says in r.stderr, r.stderr


def test_the_kernels_d_sees_label_adversarial_runs_only():
    """``fake_max`` changes only what D is trained on: it splits adversarial cells ("all" where D
    saw every kernel), never the λ = 0 runs, whose D only judges."""
    from fastreg.lab.report.analysis import label_runs
    from fastreg.lab.runs import Run
    runs = [Run(Path(f"r{lam}{arch}"), {"train_size": 100, "lam": lam, "seed": 0, "init": "default", "prior": "none",
                                        "arch": arch, "fake_max_used": fm}, "ok")
            for lam in (0.0, 1.0) for arch, fm in (("dwpnet", None), ("resnet20", 862))]
    label_runs(runs)
    assert [r.variant for r in runs] == ["arch=dwpnet", "arch=resnet20", "arch=dwpnet, fake_max=all",
                                         "arch=resnet20, fake_max=862"]
