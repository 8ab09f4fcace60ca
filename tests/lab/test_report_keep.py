"""``python -m fastreg.report RUNS --keep REPORT.json``: an earlier report's per-run rows count
for run folders that are gone (runs/ is not committed) or unfinished, and a finished folder wins
over its row."""
import json
import shutil

from fastreg.lab import report
from fastreg.lab.cli import run_main


def test_a_kept_report_counts_runs_whose_folders_are_gone(setup, tmp_path, capsys):
    """``--keep``: an earlier report's rows stand in for run folders that are gone (runs/ is not
    committed) or unfinished; a finished folder wins over its row; the records come out as the
    report of the full folders made them."""
    tmp, data, bank, base, out = setup
    root = tmp_path / "runs"
    shutil.copytree(out, root)
    first = tmp_path / "first.md"
    assert run_main(report.main, [str(root), "--out", str(first)]) == 0
    kept = json.loads(first.with_suffix(".json").read_text())
    assert all("bank_id" in r for r in kept["runs"] if r["method"] == "adv1")   # what a later check needs
    shutil.rmtree(root / "n20/adv1/s1")                            # gone with its machine
    (root / "n20/baseline/s0/final.json").unlink()                 # a rerun under way
    again = tmp_path / "again.md"
    assert run_main(report.main, [str(root), "--out", str(again), "--keep", str(first.with_suffix(".json"))]) == 0
    data_again = json.loads(again.with_suffix(".json").read_text())
    assert {k: v for k, v in data_again.items() if k != "runs"} == {k: v for k, v in kept.items() if k != "runs"}
    assert sorted(data_again["runs"], key=lambda r: r["run"]) == sorted(kept["runs"], key=lambda r: r["run"])
    text = again.read_text()
    assert "from 2 run folders" in text and "2 finished runs whose folders are gone" in text
    assert "2 more of its rows are finished run folders here" in text
    assert "Runs not counted" not in text                            # the unfinished rerun waits behind its row
    assert "python -m fastreg.sweep" in text                          # the kept report's commands
    edited = json.loads(first.with_suffix(".json").read_text())      # a finished folder wins over its row
    for r in edited["runs"]:
        if r["run"].endswith("n20/adv1/s0"):
            r["test_acc"] = 0.0
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    third = tmp_path / "third.md"
    assert run_main(report.main, [str(root), "--out", str(third), "--keep", str(tmp_path / "edited.json")]) == 0
    data3 = json.loads(third.with_suffix(".json").read_text())
    assert data3["cells"] == kept["cells"] and "2 more of its rows are finished run folders" in third.read_text()
    for cfg in (root / "n20/adv1").rglob("config.json"):             # the bank rebuilt: the same recipe
        c = json.loads(cfg.read_text())
        c["bank_meta"]["created"] = "another time"
        cfg.write_text(json.dumps(c))
    assert run_main(report.main, [str(root), "--out", str(tmp_path / "fourth.md"), "--keep",
                                  str(first.with_suffix(".json"))]) == 0
    (root / "n20/baseline/s0/failed.json").write_text("{}")          # the rerun failed: listed, the row counts
    fifth = tmp_path / "fifth.md"
    assert run_main(report.main, [str(root), "--out", str(fifth), "--keep", str(first.with_suffix(".json"))]) == 0
    acc = lambda d: [(c["label"], c["seeds"], c["acc_mean"]) for c in d["cells"]]   # noqa: E731
    assert acc(json.loads(fifth.with_suffix(".json").read_text())) == acc(kept)
    assert "Runs not counted" in fifth.read_text() and "n20/baseline/s0` | failed" in fifth.read_text()
    capsys.readouterr()
    for r in edited["runs"]:                                          # a kept row of another bank
        if r["run"].endswith("n20/adv1/s1"):
            r["bank_id"] = "another bank"
    (tmp_path / "other.json").write_text(json.dumps(edited))
    bad = [(["--keep", str(tmp_path / "none.json")], "not a readable JSON"),
           (["--keep", str(first)], "not a readable JSON"),
           (["--keep", str(tmp_path / "edited.json"), "--keep", str(first.with_suffix(".json"))], "keep one of them"),
           (["--keep", str(tmp_path / "other.json")], "different banks")]
    (tmp_path / "rows.json").write_text(json.dumps({"cells": []}))
    bad.append((["--keep", str(tmp_path / "rows.json")], "no per-run rows"))
    for i, (args, msg) in enumerate(bad):
        dest = tmp_path / f"bad{i}" / "r.md"
        assert run_main(report.main, [str(root), "--out", str(dest), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], (args, err)
        assert not dest.parent.exists()
