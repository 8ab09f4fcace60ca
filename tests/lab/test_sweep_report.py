"""A tiny sweep (resume, skip-on-rerun), the report on it, and every bad input: one line, exit 2."""
import json
import shutil
import subprocess
import sys

import pytest
import torch

from fastreg.lab import report, sweep
from fastreg.lab.report import analysis as cells_mod, references as bank_refs
from fastreg.lab.cli import run_main
from fastreg.lab.runs import Run

TRAIN = ["--eval-size", "50", "--batch-size", "50"]


def _log(out):
    return [json.loads(l) for l in (out / "sweep_log.jsonl").read_text().splitlines()]


def test_sweep_layout_skip_and_resume(setup, capsys):
    tmp, data, bank, base, out = setup
    runs = [out / "n20" / m / f"s{s}" for m in ("baseline", "adv1") for s in (0, 1)]
    for d in runs:
        final = json.loads((d / "final.json").read_text())
        assert final["seed"] == final["data_seed"] == int(d.name[1:]) and final["epochs"] == 2
    assert json.loads((out / "n20/adv1/s1/config.json").read_text())["lam"] == 1.0
    assert json.loads((out / "n20/baseline/s0/config.json").read_text())["lam"] == 0.0
    assert [r["status"] for r in _log(out)] == ["done"] * 4
    stamps = {d: (d / "final.json").stat().st_mtime_ns for d in runs}
    assert not any((d / "checkpoint.pt").exists() for d in runs)  # finished runs keep no optimizer state
    argv = base + ["--out", str(out), "--", *TRAIN]
    assert run_main(sweep.main, argv) == 0                        # all finished: nothing retrained
    assert {d: (d / "final.json").stat().st_mtime_ns for d in runs} == stamps and len(_log(out)) == 4
    shutil.rmtree(runs[1])                                        # rerun one run, keeping its checkpoint
    assert run_main(sweep.main, base + ["--out", str(out), "--", *TRAIN, "--keep-checkpoint"]) == 0
    (runs[1] / "final.json").unlink()                             # checkpoint, no final.json: interrupted
    capsys.readouterr()
    assert run_main(sweep.main, argv) == 2                        # refused without --resume, nothing run
    assert "pass --resume" in capsys.readouterr().err and not (runs[1] / "final.json").exists()
    resume = base + ["--out", str(out), "--resume", "--", *TRAIN]
    assert run_main(sweep.main, ["--dry-run", *resume]) == 0
    plan = capsys.readouterr().out
    assert "interrupted " in plan and "--resume" in plan and "1 to run" in plan
    assert run_main(sweep.main, resume) == 0
    assert _log(out)[-1]["status"] == "resumed" and (runs[1] / "final.json").exists()
    capsys.readouterr()
    assert run_main(sweep.main, base + ["--out", str(out), "--epochs", "3"]) == 2   # other settings
    assert "other settings" in capsys.readouterr().err


def test_report(setup, tmp_path):
    tmp, data, bank, base, out = setup
    root = tmp_path / "runs"
    shutil.copytree(out, root)
    shutil.copytree(root / "n20/adv1/s1", root / "n20/adv1/s2")
    (root / "n20/adv1/s2/final.json").unlink()
    (root / "n20/adv1/s2/failed.json").write_text("{}")          # a failed run: listed, not averaged
    md = tmp_path / "docs" / "results.md"
    assert run_main(report.main, [str(root), "--out", str(md), "--title", "Two seeds of adv1"]) == 0
    text = md.read_text()
    assert text.startswith("# Two seeds of adv1\n")
    # a path of this machine shows its name only, quoted once (shell quoting: … is not plain ASCII)
    assert "--out '…/results.md' --title 'Two seeds of adv1'`" in text and "'\"'\"'" not in text
    assert "| 20 | baseline | conv1 | 2 | 0,1 |" in text and "| 20 | adv1 | conv1 | 2 | 0,1 |" in text
    assert "| 20 | adv1 | conv1 | 0,1 (2) |" in text                # paired difference row
    assert "failed" in text and "python -m fastreg.sweep" in text and "External reference" in text
    assert "nan" not in text.lower().replace("nanogpt", "")
    data = json.loads((md.parent / "results.json").read_text())
    assert data["runs"][0]["status"] in ("ok", "failed")
    _rendered_from_records_and_rebuilt_from_rows(data, text)
    for f in ("results_acc_vs_size.png", "results_filters.png", "results_training.png"):
        assert (md.parent / "figures" / f).stat().st_size > 1000


def _rendered_from_records_and_rebuilt_from_rows(data: dict, text: str, banks: list[str] = ()) -> None:
    """A report's cell tables are its JSON records rendered (the docs' printers read the same
    records), and the records come back from its per-run rows alone (``fastreg.lab.report.archive``: how the
    archived reports, whose runs are gone, got theirs)."""
    from fastreg.lab.report import rebuild
    from fastreg.lab.report import cell_tables
    assert data["format"] == 2 and data["cells"]
    assert "\n".join(cell_tables(data)) in text
    again = rebuild({"runs": data["runs"]}, banks, data["refs"])
    assert json.dumps(again, sort_keys=True) == json.dumps({k: v for k, v in data.items() if k != "runs"},
                                                          sort_keys=True)


def test_report_refuses_a_seed_twice_and_counts_a_finished_retry(setup, tmp_path, capsys):
    tmp, data, bank, base, out = setup
    root = tmp_path / "runs"
    shutil.copytree(out, root)
    (root / "n20/adv1/s0/failed.json").write_text("{}")          # stale: the retry finished
    md = tmp_path / "r.md"
    assert run_main(report.main, [str(root), "--out", str(md)]) == 0
    assert "| 20 | adv1 | conv1 | 2 | 0,1 |" in md.read_text()
    shutil.copytree(root / "n20/adv1/s1", root / "n20/adv1/copy")  # the same run twice
    capsys.readouterr()
    assert run_main(report.main, [str(root), "--out", str(tmp_path / "r2.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed 1 twice" in err[0] and not (tmp_path / "r2.md").exists()


def test_paired_statistics():
    import numpy as np
    d = np.array([1.2, -0.3, 0.8, 2.1, 0.4])
    m, lo, hi, p, how = cells_mod.paired(d)
    h = 2.7764451051977987 * np.std(d, ddof=1) / np.sqrt(5)     # t(0.975, df 4)
    assert how == "paired t" and m == pytest.approx(0.84)
    assert (lo, hi) == (pytest.approx(0.84 - h), pytest.approx(0.84 + h))
    assert lo < 0 < hi and p == pytest.approx(0.1040, abs=5e-4)
    assert cells_mod.paired(np.array([0.5]))[1:] == (None, None, None, "—")
    same = np.array([0.37] * 5) + np.array([0, 1e-16, -1e-16, 2e-16, 0])   # equal up to float noise
    assert cells_mod.paired(same)[3:] == (None, "all differences equal")


def test_pairing_ignores_discriminator_settings_for_the_baseline():
    """A λ = 0 run does not depend on D's settings: a D ablation pairs with the default baseline,
    but never across a setting that changes the classifier (width)."""
    from pathlib import Path
    def run(lam, seed, **cfg):
        return Run(Path(f"r{lam}{seed}{cfg}"), {"train_size": 100, "lam": lam, "seed": seed,
                                                        "init": "default", "bank": "b", **cfg}, "ok")
    runs = [run(0.0, s, d_lr=2e-4, width=1.0) for s in (0, 1)] + \
           [run(1.0, s, d_lr=1e-4, width=1.0) for s in (0, 1)] + [run(1.0, s, d_lr=2e-4, width=0.5) for s in (0, 1)]
    cells_mod.label_runs(runs)
    cells = {}
    for r in runs:
        cells.setdefault(cells_mod.Cell(r.size, r.method, r.variant, r.layers), []).append(r)
    by_label = {c.label: c for c in cells}
    base = by_label["baseline [width=1.0, d_lr=0.0002]"]
    assert cells_mod.baseline_cell(by_label["adv1 [width=1.0, d_lr=0.0001]"], cells) == base
    assert cells_mod.baseline_cell(by_label["adv1 [width=0.5, d_lr=0.0002]"], cells) is None


def test_a_reference_from_several_sources_is_the_one_of_the_same_sweep():
    """Chains from two sources are two chaininit cells that differ only in ``sources`` (a
    D-only setting for pairing); a cell pairs with the chain run in its own sweep folder, not
    with whichever label sorts first."""
    from pathlib import Path

    def run(sweep, method_init, seed, **cfg):
        return Run(Path(sweep) / "n100" / method_init / f"s{seed}",
                   {"train_size": 100, "lam": 0.0, "seed": seed, "init": method_init, "bank": "b", **cfg}, "ok")
    runs = [run("main", "chain", s, sources="zz_main") for s in (0, 1)] + \
           [run("other", "chain", s, sources="aa_other") for s in (0, 1)] + \
           [run("main", "bank", s) for s in (0, 1)] + [run("other", "bank", s, bank="b2") for s in (0, 1)]
    cells_mod.label_runs(runs)
    cells = {}
    for r in runs:
        cells.setdefault(cells_mod.Cell(r.size, r.method, r.variant, r.layers), []).append(r)
    chain_of = {r.dir.parts[0]: c for c in cells for r in cells[c] if c.method == "chaininit"}
    inits = [c for c in cells if c.method == "bankinit"]
    assert len(inits) == 2 and len(chain_of) == 2
    for c in inits:
        assert cells_mod.baseline_cell(c, cells, "chaininit") == chain_of[cells[c][0].dir.parts[0]]


def test_runs_of_different_precision_never_share_an_unlabelled_cell():
    """``--amp`` is bf16 on one machine and fp32 on another: same settings, different cells.
    Runs from before precision was recorded count as bf16 under --amp, and are labelled as
    before when amp alone explains their precision."""
    from pathlib import Path
    def run(seed, amp, precision=None):
        cfg = {"train_size": 100, "lam": 1.0, "seed": seed, "init": "default", "amp": amp}
        return Run(Path(f"r{seed}{amp}{precision}"), {**cfg, **({"precision": precision} if precision else {})}, "ok")
    runs = [run(0, True, "bf16"), run(1, True, "fp32"), run(2, True)]
    cells_mod.label_runs(runs)
    assert [r.label for r in runs] == ["adv1 [precision=bf16]", "adv1 [precision=fp32]", "adv1 [precision=bf16]"]
    runs = [run(0, True), run(1, False)]                     # old runs: amp explains it
    cells_mod.label_runs(runs)
    assert [r.label for r in runs] == ["adv1 [amp=True]", "adv1 [amp=False]"]
    runs = [run(0, True, "bf16"), run(1, True)]
    cells_mod.label_runs(runs)
    assert [r.label for r in runs] == ["adv1", "adv1"]


def test_report_without_checkpoints_uses_final_kernels(setup, tmp_path):
    """Shipped runs keep final_kernels.safetensors, not the checkpoint: same numbers."""
    from safetensors.torch import load_file
    tmp, data, bank, base, _ = setup
    out = tmp_path / "kept"
    assert run_main(sweep.main, base + ["--out", str(out), "--", *TRAIN, "--keep-checkpoint"]) == 0
    d = out / "n20/adv1/s0"
    kept = load_file(d / "final_kernels.safetensors")
    ck = torch.load(d / "checkpoint.pt", weights_only=True)["model"]["conv1.weight"]
    assert set(kept) == {"conv1"} and torch.equal(kept["conv1"], ck.float())
    full, slim = tmp_path / "full", tmp_path / "slim"
    shutil.copytree(out, full, ignore=shutil.ignore_patterns("final_kernels.safetensors"))
    shutil.copytree(out, slim, ignore=shutil.ignore_patterns("checkpoint.pt"))
    assert not list(slim.rglob("checkpoint.pt")) and not list(full.rglob("final_kernels*"))
    res = {}
    for name, root in (("full", full), ("slim", slim)):
        assert run_main(report.main, [str(root), "--out", str(tmp_path / name / "r.md")]) == 0
        runs = json.loads((tmp_path / name / "r.json").read_text())["runs"]
        res[name] = {(r["method"], r["seed"]): (r.get("auc"), r.get("mmd"), r.get("lfe")) for r in runs}
    assert res["full"].keys() == res["slim"].keys() and res["full"] == res["slim"]
    assert all(v[2] is not None for v in res["slim"].values())     # metrics were computed


def test_report_measures_conv2_of_conv1_conv2_runs(setup, tmp_path):
    """Runs that regularize conv2 get conv2 metrics against the bank's conv2 (their own table);
    conv1-only runs get none; a fastreg bank's conv2 rows are grouped by whole filter."""
    from fastreg.bank import KernelBank
    from fastreg.models import CONV_PLAN, channels
    tmp, data, bank, base, out = setup
    root = tmp_path / "runs"
    shutil.copytree(out, root / "c1")
    argv = [a if a != "baseline,adv1" else "adv1" for a in base]
    assert run_main(sweep.main, argv + ["--reg-layers", "conv1,conv2", "--out", str(root / "c12"), "--", *TRAIN]) == 0
    md = tmp_path / "r.md"
    assert run_main(report.main, [str(root), "--out", str(md)]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["runs"]
    c12 = [r for r in rows if r["reg_layers"] == "conv1,conv2"]
    c1 = [r for r in rows if r["reg_layers"] == "conv1"]
    assert len(c12) == 2 and len(c1) == 4
    for r in c12:
        assert 0.0 <= r["auc_conv2"] <= 1.0 and 0.0 < r["lfe_conv2"] < 1.0 and "mmd_conv2" in r
        assert r["lfe_conv2"] != r["lfe"]                           # conv2's own kernels, not conv1's
    assert not any(k.endswith("_conv2") for r in c1 for k in r)
    text = md.read_text()
    assert "## Filter metrics on conv2" in text and "| 20 | adv1 | conv1,conv2 | 2 |" in text
    assert "conv2 bank, one half vs the other" in text
    kb = KernelBank.load(bank)
    kb.meta["architecture"] = "DWPNet(width=0.125)"
    kb.save(tmp_path / "dwp.safetensors")
    refs = bank_refs.BankRefs(str(tmp_path / "dwp.safetensors")).fixed
    assert refs.of("conv1", 7)[1] == 3 and refs.of("conv2", 5)[1] == channels(CONV_PLAN[0][1], 0.125) == 16
    assert refs.of("conv3", 5)[1] == 16 and refs.of("conv1", 3) is None   # pooled 5x5; no 3x3 layer
    refs = bank_refs.BankRefs(str(bank)).fixed                          # no architecture: ungrouped
    assert refs.of("conv1", 7)[1] == 1 and refs.of("conv2", 5)[1] == 1


def _bad_cases(tmp, data, bank, base):
    (tmp / "empty").mkdir(exist_ok=True)
    B = base[6:]          # everything but sizes / methods / seeds
    return [
        (sweep, ["--methods", "baseline,adv2", *B], "unknown method"),
        (sweep, ["--sizes", "abc", *B], "--sizes"),
        (sweep, ["--sizes", "0", *B], "--sizes"),
        (sweep, ["--sizes", "15", *B], "not divisible"),
        (sweep, ["--sizes", "5000", *B], "target pool has"),
        (sweep, ["--seeds", "0,0", *B], "--seeds"),
        (sweep, ["--sizes", "20", "--reg-layers", "conv9", *B], "unknown layer 'conv9'"),
        (sweep, ["--sizes", "20", *B, "--", "--seed", "3"], "set by the sweep"),
        (sweep, ["--sizes", "20", *B, "--", "--lambda", "2"], "set by the sweep"),
        (sweep, ["--sizes", "20", "--data-root", str(tmp / "nodata"), "--bank", str(bank)], "no cifar10"),
        (sweep, ["--sizes", "20", "--data-root", str(data), "--bank", str(tmp / "nobank.safetensors")],
         "no such bank"),
        (report, [str(tmp / "empty")], "no finished runs"),
        (report, [str(tmp / "missing")], "no such runs folder"),
        (report, [str(tmp / "empty"), "--include", str(tmp / "none.md")], "cannot read it"),
    ]


def test_bad_input_one_line_exit_2_nothing_written(setup, tmp_path, capsys, monkeypatch):
    tmp, data, bank, base, out = setup
    monkeypatch.setenv("FASTREG_OFFLINE", "1")
    for i, (mod, argv, msg) in enumerate(_bad_cases(tmp_path, data, bank, base)):
        dest = tmp_path / f"out{i}"
        argv = argv + ["--out", str(dest / "r.md" if mod is report else dest)] if "--" not in argv else \
            argv[:argv.index("--")] + ["--out", str(dest)] + argv[argv.index("--"):]
        rc = run_main(mod.main, argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and msg in err[0], (argv, err)
        assert not dest.exists(), argv
    with pytest.raises(SystemExit) as e:                           # a bad train arg after --
        run_main(sweep.main, base[6:] + ["--sizes", "20", "--out", str(tmp_path / "o"), "--", "--lr", "-1"])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_subprocess_bad_input_has_no_traceback(tmp_path):
    for mod in ("fastreg.sweep", "fastreg.report"):
        args = ["--methods", "nope"] if mod == "fastreg.sweep" else [str(tmp_path)]
        r = subprocess.run([sys.executable, "-m", mod, *args, "--out", str(tmp_path / "o")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "o").exists()


def test_a_cell_mixing_banks_is_refused_but_not_a_merged_bank_read_in_another_key_order():
    """Runs record their bank's metadata; a merged bank holds its parts' metadata as a JSON
    string whose key order followed the file's, so two runs of one bank may spell it apart."""
    from types import SimpleNamespace
    from fastreg.errors import UsageError
    part = {"format": "fastreg-bank/1", "seeds": "[0, 1]", "created": "x"}
    a = {"format": "fastreg-bank/1", "merged": json.dumps([part])}
    b = {"format": "fastreg-bank/1", "merged": json.dumps([dict(reversed(list(part.items())))])}
    assert a["merged"] != b["merged"]
    run = lambda seed, meta: SimpleNamespace(seed=seed, dir=f"s{seed}", cfg={"bank_meta": meta}, kept=False)  # noqa: E731
    cells_mod.check_cells({cells_mod.Cell(100, "adv1", "", "conv1"): [run(0, a), run(1, b)]})            # the same bank
    other = {"format": "fastreg-bank/1", "merged": json.dumps([{**part, "seeds": "[2]"}])}
    with pytest.raises(UsageError, match="different banks"):
        cells_mod.check_cells({cells_mod.Cell(100, "adv1", "", "conv1"): [run(0, a), run(1, other)]})


def test_report_compares_one_method_across_two_banks(setup, tmp_path):
    """Two run folders, two banks: the banked cells are labelled by bank, both pair with the one
    baseline (it never saw a bank), the same method is compared bank against bank seed by seed,
    and each run's filter metrics are measured against its own bank."""
    from fastreg.bank import KernelBank
    from helpers import smooth_kernels
    tmp, data, bank, base, out = setup
    newer = tmp_path / "newer.safetensors"
    KernelBank({"conv1": smooth_kernels(400, 7) * 3.0, "conv2": smooth_kernels(600, 5, 1)},
               {"dataset": "synthetic", "architecture": "DWPNet(width=0.125)", "created": "2999-01-01T00:00:00",
                "recipe": json.dumps({"arch": "dwpnet", "epochs": 24})}).save(newer)
    second = tmp_path / "second"
    argv = [a if a != "baseline,adv1" else "adv1" for a in base]
    argv[argv.index("--bank") + 1] = str(newer)
    assert run_main(sweep.main, argv + ["--out", str(second), "--", *TRAIN]) == 0
    md = tmp_path / "r.md"
    (tmp_path / "study.md").write_text("# Bank study\n\nhow the newer bank was chosen\n")
    assert run_main(report.main, [str(out), str(second), "--out", str(md), "--include", str(tmp_path / "study.md")]) == 0
    text = md.read_text()
    assert "\n## Bank study\n\nhow the newer bank was chosen\n" in text      # included, one level down
    assert "| 20 | baseline | conv1 | 2 | 0,1 |" in text                       # no bank label
    assert "| 20 | adv1 [bank=bank] | conv1 | 2 | 0,1 |" in text             # the file's stem
    assert "| 20 | adv1 [bank=dwpnet-24ep] | conv1 | 2 | 0,1 |" in text      # from its metadata
    assert "| 20 | adv1 [bank=dwpnet-24ep] | conv1 (vs baseline) | 0,1 (2) |" in text   # paired to it
    assert "## The same method with another bank" in text
    assert "| 20 | adv1 | conv1 | dwpnet-24ep vs bank | 0,1 (2) |" in text   # newer − older
    data = json.loads((tmp_path / "r.json").read_text())
    _rendered_from_records_and_rebuilt_from_rows(data, text, banks=["bank", "dwpnet-24ep"])
    rows = {(r["method"], r["seed"]): r for r in data["runs"]}
    for s in (0, 1):      # the same kernels would read differently against the other bank
        assert rows[("adv1 [bank=dwpnet-24ep]", s)]["mmd"] != rows[("adv1 [bank=bank]", s)]["mmd"]
    refs = text.split("## Filter-metric reference points", 1)[1]
    assert "newer.safetensors, one half vs the other" in refs and "bank.safetensors, one half vs the other" in refs


def test_reference_pooled_from_layers_of_different_filter_rows_is_judged_as_slices():
    """A layer no bank layer serves by name is measured against every bank layer of its size,
    pooled; when their filters have different row counts the pool is 2-D slices (group 1), not
    a crash (ResNet-20 runs against the prefixed ``resnet20.*`` banks)."""
    from fastreg.bank import KernelBank
    g = torch.Generator().manual_seed(3)
    bank = KernelBank({"net.a": torch.randn(30, 3, 3, generator=g), "net.b": torch.randn(48, 3, 3, generator=g)},
                      {"filter_rows": json.dumps({"net.a": 3, "net.b": 4})})
    refs = bank_refs.References(bank, "test")
    kernels, group = refs.of("conv1", 3)
    assert group == 1 and kernels.shape == (78, 3, 3)
    from fastreg.filter_metrics import judge_auc
    auc = judge_auc(torch.randn(24, 3, 3, generator=g), kernels, group_learned=3, group_bank=group)
    assert 0.0 <= auc <= 1.0


def test_whole_network_grids_are_paired_against_each_prior_not_only_the_baseline():
    from types import SimpleNamespace as K
    keys = lambda *ms: [K(method=m) for m in ms]  # noqa: E731
    assert cells_mod.comparison_refs(keys("baseline", "adv1", "bankinit")) == []       # the seed's grid, as before
    assert cells_mod.comparison_refs(keys("baseline", "filterinit", "chaininit", "finetune", "chaininit+l2sp")) == \
        ["bankinit", "filterinit", "chaininit", "finetune"]
    assert cells_mod.comparison_refs(keys("baseline", "chaininit")) == ["bankinit"]   # nothing else to stand beside


def test_runs_drawn_from_or_judged_by_a_fit_to_the_bank_are_labelled_by_it():
    """A VAE (or Gaussian) fitted to a bank depends on it: VAE init and the VAE penalty with two
    banks make two cells, as bank init does; the baseline never sees a bank."""
    assert not cells_mod.uses_bank({"lam": 0.0, "init": "default", "prior": "none"})
    for cfg in ({"init": "vae"}, {"prior": "vae"}, {"prior": "gauss"}, {"init": "cov"}, {"init": "bank"}, {"lam": 1.0}):
        assert cells_mod.uses_bank(cfg), cfg
    from pathlib import Path
    from fastreg.lab.priors import VAE_WEIGHT
    runs = [Run(Path(f"r{m}{b}"), {"train_size": 100, "lam": 0.0, "seed": 0, "init": init, "prior": prior,
                                   "prior_weight": VAE_WEIGHT, "bank": b}, "ok")
            for m, init, prior in (("v", "vae", "none"), ("p", "default", "vae"), ("b", "default", "none"))
            for b in ("b1", "b2")]
    for r in runs:
        r.bank_name = r.cfg["bank"]
    cells_mod.label_runs(runs)
    assert [r.label for r in runs] == ["vaeinit-slice [bank=b1]", "vaeinit-slice [bank=b2]", "vae [bank=b1]",
                                       "vae [bank=b2]", "baseline", "baseline"]


def test_presets_combine_with_each_other_and_with_methods():
    from fastreg.lab.sweep import expand_presets
    assert expand_presets("main,filterinit").split(",") == ["baseline", "filterinit", "filterinit+adv1"]
    assert expand_presets("main,seed").split(",")[:4] == ["baseline", "filterinit", "filterinit+adv1", "adv0.1"]
    assert expand_presets("adv1,adv1") == "adv1,adv1"                  # typed twice: refused by name_list
