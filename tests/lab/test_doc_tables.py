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
    (tmp_path / "r.json").write_text(json.dumps({"format": 2, "cells": cells, "runs": []}))
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


DWP = SCRIPT.parent / "dwp_table.py"


def _runs(method: str, accs: list[float], size: int = 100) -> list[dict]:
    return [{"run": f"{method}/s{s}", "train_size": size, "method": method, "reg_layers": "conv1", "seed": s,
             "status": "ok", "test_acc": a / 100} for s, a in enumerate(accs)]


def test_dwp_table_pairs_each_learned_prior_with_the_bank_and_the_gaussian(tmp_path):
    runs = (_runs("baseline", [30, 31, 29]) + _runs("filterinit", [36, 37, 35]) + _runs("covinit", [33, 33, 32])
            + _runs("gauss", [30, 32, 29]) + _runs("vaeinit", [31, 32.5, 29.5]) + _runs("vaeinit", [50, 51], 500))
    runs.append({**runs[0], "run": "x", "status": "failed", "test_acc": None})      # a failed run is not counted
    cells = [{"train_size": 100, "label": "filterinit", "metrics": {"auc": 0.4321, "mmd": 0.0012}}]
    (tmp_path / "r.json").write_text(json.dumps({"format": 2, "cells": cells, "runs": runs}))
    out = subprocess.run([sys.executable, str(DWP), str(tmp_path / "r.md")], capture_output=True, text=True,
                         check=True).stdout
    line = lambda m: next(x for x in out.splitlines() if f"`{m}`" in x)  # noqa: E731
    assert "| 30.00 % | not run |" in line("baseline")
    assert "+6.00 (the same every seed)" in line("filterinit") and "0.432" in line("filterinit")
    vae = line("vaeinit")                    # vs baseline: +1, +1.5, +0.5 → +1.00, CI from the t-interval
    assert "+1.00 [" in vae and "(1 seed)" not in vae
    second = out.split("\n\n")[1]
    row = next(x for x in second.splitlines() if "`vaeinit`" in x).split("|")
    assert row[2].strip() == "100" and row[3].strip().startswith("**−5.00 [")   # −5, −4.5, −5.5 vs whole filters
    assert row[5].strip().startswith("+0.67 [")                                    # +1, +0.5, +0.5 vs Gaussian penalty
    assert "| 500 | not run | not run | not run |" in second


def test_dwp_table_leaves_out_a_reference_that_was_not_run(tmp_path):
    runs = _runs("baseline", [30, 31, 29]) + _runs("filterinit", [36, 37, 35]) + _runs("vae", [31, 32, 30])
    (tmp_path / "r.json").write_text(json.dumps({"format": 2, "cells": [], "runs": runs}))
    out = subprocess.run([sys.executable, str(DWP), str(tmp_path / "r.md")], capture_output=True, text=True,
                         check=True).stdout
    second = out.split("\n\n")[1].splitlines()
    assert second[0] == "| learned prior | n | Δ vs whole-filter init |"
    assert second[2].split("|")[3].strip() == "−5.00 (the same every seed)"      # −5 on every seed


def test_dwp_table_refuses_two_protocols_in_one_report(tmp_path):
    runs = _runs("baseline", [30, 31]) + _runs("baseline", [40])
    (tmp_path / "r.json").write_text(json.dumps({"format": 2, "cells": [], "runs": runs}))
    r = subprocess.run([sys.executable, str(DWP), str(tmp_path / "r.md")], capture_output=True, text=True)
    assert r.returncode == 2 and "twice" in r.stderr and len(r.stderr.strip().splitlines()) == 1


MNIST = SCRIPT.parent / "mnist_dwp_table.py"


def test_mnist_dwp_table_pairs_the_priors_seed_by_seed(tmp_path):
    vi = "vaeinit-slice-unscaled+vi-"
    runs = (_runs(vi + "normal", [70, 72, 71], 50) + _runs(vi + "vae", [75, 76, 77], 50)
            + _runs(vi + "loguniform", [74, 76, 77], 50) + _runs("baseline", [60, 61, 62], 50)
            + _runs(vi + "vae", [90, 91], 1000) + _runs(vi + "normal", [89, 91], 1000))
    (tmp_path / "r.json").write_text(json.dumps({"format": 2, "cells": [], "runs": runs}))
    out = subprocess.run([sys.executable, str(MNIST), str(tmp_path / "r.md")], capture_output=True, text=True,
                         check=True).stdout
    first, second = out.split("\n\n")
    line = lambda text, key: next(x for x in text.splitlines() if key in x).split("|")  # noqa: E731
    assert line(first, f"`{vi}vae`")[2:4] == [" 76.00 % ", " 90.50 % (2 seeds) "]
    assert line(first, "`baseline`")[3].strip() == "not run"
    normal = line(second, "DWP vs standard normal")       # +5, +4, +6 → +5.00; +1, 0 at 1000
    assert normal[2].strip().startswith("**+5.00 [") and normal[3].strip().startswith("+0.50 [")
    assert line(second, "DWP vs log-uniform")[2].strip() == "+0.33 [−1.10, +1.77]"
    assert not any("bank init" in x for x in second.splitlines())                   # not run: no row


def test_mnist_dwp_table_refuses_two_protocols_in_one_report(tmp_path):
    runs = _runs("baseline", [30, 31], 50) + _runs("baseline", [40], 50)
    (tmp_path / "r.json").write_text(json.dumps({"format": 2, "cells": [], "runs": runs}))
    r = subprocess.run([sys.executable, str(MNIST), str(tmp_path / "r.md")], capture_output=True, text=True)
    assert r.returncode == 2 and "twice" in r.stderr and len(r.stderr.strip().splitlines()) == 1



def test_mnist_budget_table_pairs_budgets_and_priors_and_the_three_predictions(tmp_path):
    """The step-budget check (DESIGN.md §15): each prior at both budgets with the paired Δ
    between them, DWP against the other two at each, and the three ways to predict over the
    runs that record them ("not recorded" where a run ran without them)."""
    vi = "vaeinit-slice-unscaled+vi-"
    short = _runs(vi + "normal", [70, 72, 71, 73, 74], 50) + _runs(vi + "vae", [65, 66, 67, 68, 69], 50)
    long = _runs(vi + "normal", [71, 74, 72, 75, 73], 50) + _runs(vi + "vae", [75, 76, 77, 78, 79], 50)
    for i, r in enumerate(long):          # normal: local 80-84, mean 60-64; vae: local 85-89, mean 63-67
        r.update(test_acc_local=(80 + i) / 100, test_acc_mean=(60 + i - 2 * (i >= 5)) / 100)
    for name, runs in (("p", short), ("b", long)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"format": 2, "cells": [], "runs": runs}))
    out = subprocess.run([sys.executable, str(SCRIPT.parent / "mnist_budget_table.py"), str(tmp_path / "p.md"),
                          str(tmp_path / "b.md")], capture_output=True, text=True, check=True).stdout
    first, second, third, fourth = out.split("\n\n")
    line = lambda text, key: [c.strip() for c in next(x for x in text.splitlines() if key in x).split("|")]  # noqa: E731
    assert line(first, f"`{vi}vae`")[2:5] == ["67.00 %", "77.00 %", "+10.00 (the same every seed)"]
    assert line(first, f"`{vi}loguniform-trunc`")[2:5] == ["not run", "not run", "not run"]
    dwp_vs_sn = line(second, "DWP vs standard normal")      # −5, −6, −4, −5, −5; then +4, +2, +5, +3, +6
    assert dwp_vs_sn[2].startswith("**−5.00 [") and dwp_vs_sn[3].startswith("**+4.00 [")
    assert line(second, "DWP vs log-uniform")[2:4] == ["not run", "not run"]
    weights, local, mean = (line(third, k) for k in ("weight samples", "per-activation", "posterior mean"))
    assert weights[2:5] == ["not recorded"] * 3 and weights[5:8] == ["73.00 %", "not recorded", "77.00 %"]
    assert (local[5], local[7], mean[5], mean[7]) == ("82.00 %", "87.00 %", "62.00 %", "65.00 %")
    assert line(fourth, "DWP vs standard normal")[2:4] == ["not recorded", "+5.00 (the same every seed)"]


def test_mnist_dwp_table_adds_the_three_predictions_where_runs_record_them(tmp_path):
    vi = "vaeinit-slice-unscaled+vi-"
    runs = _runs(vi + "normal", [70, 72], 50) + _runs(vi + "normal", [80, 81], 100) + _runs(vi + "vae", [78, 80], 100)
    for r, local in zip(runs[2:], [90, 91, 93, 94]):
        r.update(test_acc_local=local / 100, test_acc_mean=0.5)
    (tmp_path / "r.json").write_text(json.dumps({"format": 2, "cells": [], "runs": runs}))
    out = subprocess.run([sys.executable, str(MNIST), str(tmp_path / "r.md")], capture_output=True, text=True,
                         check=True).stdout
    third = out.split("\n\n")[2]
    assert "n = 100: per-activation noise" in third and "n = 50" not in third     # only where recorded
    row = [c.strip() for c in next(x for x in third.splitlines() if x.startswith("| VI, DWP prior")).split("|")]
    assert row[2:5] == ["79.00 %", "93.50 %", "50.00 %"]
    delta = [c.strip() for c in next(x for x in third.splitlines() if "Δ DWP vs normal" in x).split("|")]
    assert delta[3] == "+3.00 (the same every seed)"


def test_mnist_papervae_table_pairs_the_paper_vae_with_the_grid_rows(tmp_path):
    """The paper-VAE check (DESIGN.md §15): the paper-VAE rows' means beside the grid's, and the
    paired Δ of the VI row against each grid prior, against its own init as a point estimate,
    and of the two inits, over the seeds both ran, for both ways to predict."""
    vi, init = "vaeinit-slice-unscaled+vi-", "vaeinit-slice-unscaled"
    grid = (_runs(vi + "normal", [70, 72, 71, 73, 74], 50) + _runs(vi + "vae", [65, 66, 67, 68, 69], 50)
            + _runs(init, [74, 74, 74, 74, 74], 50) + _runs(vi + "normal", [90, 91], 100))
    paper = _runs(vi + "vae", [75, 77, 76], 50) + _runs(init, [78, 76, 80, 79], 50)
    for r, local in zip(paper, [80, 81, 82]):
        r["test_acc_local"] = local / 100
    for name, runs in (("p", grid), ("v", paper)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"format": 2, "cells": [], "runs": runs}))
    out = subprocess.run([sys.executable, str(SCRIPT.parent / "mnist_papervae_table.py"), str(tmp_path / "p.md"),
                          str(tmp_path / "v.md")], capture_output=True, text=True, check=True).stdout
    first, second = out.split("\n\n")
    line = lambda text, key: [c.strip() for c in next(x for x in text.splitlines() if key in x).split("|")]  # noqa: E731
    assert line(first, "standard normal")[2:4] == ["72.00 %", "not recorded"]
    assert line(first, "DWP, the paper's own")[2:4] == ["76.00 % (3 seeds)", "81.00 % (3 seeds)"]
    assert line(first, "the paper's VAE init")[2:4] == ["78.25 % (4 seeds)", "not recorded"]
    assert line(first, "log-uniform")[2:4] == ["not recorded", "not recorded"]
    sn = line(second, "vs standard normal")              # 75-70, 77-72, 76-71 → +5 on the 3 shared seeds
    assert sn[2] == "+5.00 (the same every seed)" and sn[3] == "not recorded"
    assert line(second, "vs DWP, fastreg")[2].startswith("**+10.00 [")   # +10, +11, +9 (seeds 0-2)
    prior = line(second, "own VAEs vs the paper's VAE init")            # −3, +1, −4 (seeds 0-2)
    assert prior[2].startswith("−2.00 [") and prior[2].endswith("(3 seeds)")
    assert line(second, "init, point estimate vs fastreg")[2].startswith("**+4.25 [")  # +4, +2, +6, +5


def test_mnist_papervae_table_refuses_a_missing_report_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT.parent / "mnist_papervae_table.py"), str(tmp_path / "a.md"),
                        str(tmp_path / "b.md")], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
