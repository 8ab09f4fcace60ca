"""The whole-network table printer (docs/scripts/whole_network_table.py) reads a report's JSON
cells: one architecture and layer set, CIs in bold only where they exclude 0, identical
cells said as such, a same-class bank's cell marked."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "scripts" / "whole_network_table.py"


def _cell(method: str, acc: float, paired: dict, arch: str = "resnet20", layers: str = "all", **extra) -> dict:
    return {"train_size": 100, "label": method, "method": method, "reg_layers": layers, "seeds": [0, 1, 2],
            "acc_mean": acc, "acc_std": 1.0, "extra": {"arch": arch, **extra}, "paired": paired}


def _d(mean: float, lo: float | None, hi: float | None, test: str = "paired t") -> dict:
    return {"vs": "x", "vs_layers": "all", "seeds": [0, 1, 2], "mean": mean, "lo": lo, "hi": hi, "p": 0.1,
            "test": test}


def test_whole_network_table_reads_cells(tmp_path):
    cells = [
        _cell("baseline", 50.0, {}),
        _cell("chaininit", 70.0, {"baseline": _d(20.0, 15.5, 24.5), "finetune": _d(-0.5, -2.0, 1.0)},
              sources="resnet20_c04"),
        _cell("finetune", 70.5, {"chaininit": _d(0.5, -1.0, 2.0)}, sources="resnet20_c04"),
        _cell("chaininit-norms", 70.5, {"finetune": _d(0.0, 0.0, 0.0, "all differences equal")},
              sources="resnet20_c04"),
        _cell("filterinit", 49.0, {"baseline": _d(-1.0, -3.0, 1.0)}, bank="resnet20-15ep"),
        _cell("chaininit", 60.0, {"baseline": _d(10.0, 9.0, 11.0)}, arch="dwpnet", layers="conv1,conv2"),
    ]
    (tmp_path / "r.json").write_text(json.dumps({"cells": cells, "runs": []}))
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "r.md"), "resnet20", "all"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| 100 ")]
    assert [r.split("`")[1] for r in rows] == ["baseline", "filterinit", "chaininit", "chaininit-norms", "finetune"]
    chain = rows[2]
    assert "**+20.00 [+15.50, +24.50]**" in chain and "| −0.50 [−2.00, +1.00] |" in chain
    assert "(the same every seed)" in rows[3]
    assert "(same-class bank)" in rows[1] and "**" not in rows[1]
    only = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "r.md"), "resnet20", "all", "100",
                           "baseline,finetune"], capture_output=True, text=True, check=True).stdout
    assert [r.split("`")[1] for r in only.splitlines() if r.startswith("| 100 ")] == ["baseline", "finetune"]


def test_whole_network_table_refuses_a_missing_report_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none.md"), "resnet20", "all"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
