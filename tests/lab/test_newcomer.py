"""A newcomer's path through the lab: the main job's summary, small finished runs, old runs'
summed λ, a report that never writes over the project's docs, and one clear line for each
mistake a new user makes. (The README example on any model: tests/library/test_readme.py and
test_layer_units.py.)"""
from __future__ import annotations

import argparse
import json
import re

import pytest
import torch
from torch import nn

from fastreg import KernelBank
from fastreg.lab import report, sweep, train
from fastreg.lab.cli import run_main
from fastreg.lab.classes import CIFAR10_CLASSES as CIFAR10
from helpers import make_bank_file, make_npz_data, smooth_kernels

FAST = ["--width", "0.125", "--epochs", "2", "--eval-size", "50", "--batch-size", "50"]


def test_old_runs_keep_their_summed_lambda():
    """A config.json from before layer_weights reads as "sum": resuming or extending such a
    multi-layer run with today's "mean" is refused; a one-layer run is the same either way."""
    old = {"lam": 1.0, "reg_layers": "all", "prior": "none"}
    assert train.settings_diff(old, {**old, "layer_weights": "mean"}) == ["layer_weights"]
    assert train.settings_diff(old, {**old, "layer_weights": "sum"}) == []
    one = {"lam": 1.0, "reg_layers": "conv1", "prior": "none"}
    assert train.settings_diff(one, {**one, "layer_weights": "mean"}) == []
    base = {"lam": 0.0, "reg_layers": "all", "prior": "none"}
    assert train.settings_diff(base, {**base, "layer_weights": "mean"}) == []


# ------------------------------------------------------------------------ the main job
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_npz_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def rgb_bank(tmp_path_factory):
    """A 7x7 bank whose conv1 filters are whole RGB filters (3 rows each), like the packaged one."""
    path = tmp_path_factory.mktemp("bank") / "rgb.safetensors"
    KernelBank({"conv1": smooth_kernels(600, 7)}, {"filter_rows": json.dumps({"conv1": 3})}).save(path)
    return path


def test_main_job_prints_the_judge_and_keeps_a_small_folder(data, rgb_bank, tmp_path, capsys):
    """The defaults are the main job: whole-filter bank init plus the adversarial term; the
    run ends with judge AUC at start and end, one picture bank | start | end, and a small
    folder (no optimizer state) that --resume reports as finished."""
    out = tmp_path / "run"
    argv = ["--data-root", str(data), "--bank", str(rgb_bank), "--train-size", "50", "--out", str(out), *FAST]
    assert run_main(train.main, argv) == 0
    text = capsys.readouterr().out
    assert re.search(r"conv1: judge AUC vs the bank \d\.\d\d at start → \d\.\d\d at the end", text), text
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["init"], cfg["init_unit"], cfg["lam"], cfg["layer_weights"]) == ("bank", "filter", 1.0, "mean")
    final = json.loads((out / "final.json").read_text())
    auc = final["judge_auc"]["conv1"]
    assert 0 <= auc["judge_auc_start"] <= 1 and 0 <= auc["judge_auc_end"] <= 1
    assert not (out / "checkpoint.pt").exists()
    assert {"filters_conv1.png", "final_kernels.safetensors", "start_kernels.safetensors"} <= {p.name for p in out.iterdir()}
    assert sum(p.stat().st_size for p in out.iterdir()) < 5e6
    assert run_main(train.main, argv) == 2 and "finished run" in capsys.readouterr().err
    assert run_main(train.main, argv + ["--resume"]) == 0
    assert "is finished: test accuracy" in capsys.readouterr().out
    keep = tmp_path / "keep"
    assert run_main(train.main, [*argv[:-len(FAST) - 2], "--out", str(keep), *FAST, "--keep-checkpoint"]) == 0
    assert (keep / "checkpoint.pt").exists()


def test_bank_none_trains_from_the_models_own_init(data, tmp_path, capsys):
    out = tmp_path / "plain"
    assert run_main(train.main, ["--data-root", str(data), "--bank", "none", "--train-size", "20",
                                 "--out", str(out), *FAST]) == 0
    assert json.loads((out / "config.json").read_text())["init"] == "default"
    assert (out / "filters_conv1.png").exists() and "judge" not in capsys.readouterr().out


# ----------------------------------------------------------------- one line per mistake
@pytest.mark.parametrize("argv, msg", [
    (["--bank", "dwpnet_e99"], "no packaged bank has that name (packaged: dwpnet_e24, dwpnet_e4, resnet20"),
    (["--train-size", "5000"], "--train-size 5000 needs 500 images per class; the CIFAR-10 target pool has 10 of "
                                "'airplane', 10 of 'automobile', 10 of 'bird' …: at most 100 fits"),
    (["--train-size", "105"], "not divisible by the 10 classes of the CIFAR-10 target pool"),
])
def test_train_mistakes_in_one_line(data, tmp_path, capsys, argv, msg):
    rc = run_main(train.main, ["--data-root", str(data), "--out", str(tmp_path / "r"), *FAST, *argv])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def _image_folder(root, counts: dict[str, int]):
    from PIL import Image
    for split in ("train", "val"):
        for c, (name, n) in enumerate(counts.items()):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n if split == "train" else 2):
                Image.new("RGB", (12, 12), (40 * c, 10 * i, 100)).save(d / f"{i}.png")
    return root


def test_imagefolder_default_size_fits_and_a_size_that_does_not_names_the_classes(tmp_path, rgb_bank, capsys):
    root = _image_folder(tmp_path / "imgs", {"cats": 4, "dogs": 3, "owls": 6})
    base = ["--dataset", "imagefolder", "--data-root", str(root), "--bank", str(rgb_bank), "--arch", "resnet20",
            "--width", "0.25", "--epochs", "1", "--batch-size", "9", "--bank", "none"]
    assert run_main(train.main, [*base, "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["train_size"] == 9   # 3 per class
    assert run_main(train.main, [*base, "--out", str(tmp_path / "b"), "--train-size", "12"]) == 2
    err = capsys.readouterr().err
    assert "needs 4 images per class" in err and "3 of 'dogs'" in err and "at most 9 fits" in err, err


def test_collect_from_a_whole_pickled_module_says_to_save_the_state_dict(tmp_path, capsys):
    from fastreg import collect
    torch.save(nn.Sequential(nn.Conv2d(3, 8, 3)), tmp_path / "whole.pt")
    rc = run_main(collect.main, ["--from-checkpoint", str(tmp_path / "whole.pt"), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and "model.state_dict()" in err and "\x1b[" not in err and err.count("\n") == 1, err



def test_a_recorded_protocol_is_the_one_older_runs_read_as(two_runs):
    """A CIFAR-10 run records its protocol; the same run without the record (made before it was
    kept) reads as the same protocol, so old and new runs still share their cells."""
    from fastreg.lab.protocol import protocol, protocol_key
    cfg = json.loads((two_runs / "a" / "r" / "config.json").read_text())
    rec = cfg["protocol"]
    assert rec == {"dataset": "cifar10", "classes": list(CIFAR10), "image_size": 32, "eval_split": "test",
                   "eval_images": 100}
    old = {k: v for k, v in cfg.items() if k != "protocol"}
    assert protocol_key(protocol(old)) == protocol_key(rec)
    five = protocol({**old, "classes": [5, 6, 7, 8, 9]})
    assert five["classes"] == ["dog", "frog", "horse", "ship", "truck"] and protocol_key(five) != protocol_key(rec)

def test_runs_of_two_protocols_never_share_a_table_a_difference_or_a_curve(two_runs, tmp_path, capsys):
    """An image-folder run (3 classes, measured on its val/ split) and CIFAR-10 runs in one
    folder: a section each, headed by what its accuracy is measured on, its own figures; the
    image-folder section calls its accuracy validation accuracy. ``--out`` without ``.md`` is a
    folder that receives the report, its JSON and its figures, and nothing lands beside it."""
    import shutil
    mixed = tmp_path / "mixed"
    shutil.copytree(two_runs, mixed)
    imgs = _image_folder(tmp_path / "imgs", {"cats": 3, "dogs": 3, "owls": 3})
    bank = mixed / "bank.safetensors"
    for name, lam, init in (("if_base", "0", "default"), ("if_adv", "1", "bank")):
        assert run_main(train.main, ["--dataset", "imagefolder", "--data-root", str(imgs), "--bank", str(bank),
                                     "--lambda", lam, "--init", init, "--out", str(mixed / name / "r"), *FAST]) == 0
    folder = tmp_path / "out" / "rep"
    capsys.readouterr()
    assert run_main(report.main, [str(mixed), "--out", str(folder)]) == 0
    assert "2 protocols in separate tables" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["rep"]
    assert {p.name for p in folder.iterdir()} == {"report.md", "report.json", "figures"}
    data = json.loads((folder / "report.json").read_text())
    secs = {s["protocol"]["dataset"]: s for s in data["protocols"]}
    assert set(secs) == {"cifar10", "imagefolder"} and len(data["runs"]) == 4
    assert secs["imagefolder"]["protocol"] == {"dataset": "imagefolder", "classes": ["cats", "dogs", "owls"],
                                               "image_size": 32, "eval_split": "val", "eval_images": 6}
    assert [c["train_size"] for c in secs["imagefolder"]["cells"]] == [9, 9]
    assert [c["train_size"] for c in secs["cifar10"]["cells"]] == [20, 20]
    for s in secs.values():                          # each Δ pairs two cells of its own section
        (adv,) = [c for c in s["cells"] if c["method"] != "baseline"]
        assert adv["paired"]["baseline"]["vs"] == "baseline" and adv["train_size"] == s["cells"][0]["train_size"]
    text = (folder / "report.md").read_text()
    assert "## Protocol 1: CIFAR-10, all 10 classes, 32×32 images, accuracy on its test split (100 images)" in text
    assert ("## Protocol 2: image folder, 3 classes (cats, dogs, owls), 32×32 images, accuracy on its val "
            "split (6 images)") in text
    assert "### Test accuracy" in text and "### Validation accuracy" in text and "| val acc (%) |" in text
    assert "## Test accuracy" not in text.replace("### Test", "")
    figs = sorted(p.name for p in (folder / "figures").iterdir())
    assert "report_protocol1_acc_vs_size.png" in figs and "report_protocol2_acc_vs_size.png" in figs
    assert all("figures/" + f in text for f in figs)
    # the same runs reported as a .md path: figures beside it; a file in the folder's place is refused
    assert run_main(report.main, [str(mixed / "if_base"), "--out", str(tmp_path / "one.md")]) == 0
    assert (tmp_path / "figures" / "one_acc_vs_size.png").exists()
    assert "### " not in (tmp_path / "one.md").read_text() and "## Validation accuracy" in (tmp_path / "one.md").read_text()
    (tmp_path / "plain").write_text("x")
    assert run_main(report.main, [str(mixed), "--out", str(tmp_path / "plain")]) == 2
    assert "is a file" in capsys.readouterr().err

# -------------------------------------------------------------------------- --help
def _modules():
    from fastreg.lab import collect
    return [train, sweep, report, collect]


@pytest.mark.parametrize("mod", _modules(), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_help_gives_every_option_a_text_and_its_default(mod, capsys):
    """Every option of train, sweep, report and collect has a help text that says its default
    (flags are off by default), once; descriptions are whole sentences."""
    from fastreg.bank import PACKAGED
    parser = mod.build_parser()
    fmt = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.dest == "help" or action.help == argparse.SUPPRESS:
            continue
        assert action.help, action.option_strings
        text = fmt._expand_help(action)
        if action.nargs != 0:
            assert "default" in text.lower(), (action.option_strings, text)
    text = parser.format_help()
    assert "(default: None)" not in text and not re.search(r"default[^\n]*\(default:", text), text
    assert "(default: )" not in text and "(default: [])" not in text
    assert "CIFAR-10 classifier" not in text and not parser.description.rstrip().endswith((";", ","))
    if mod is sweep:
        assert "filterinit+adv1" in text and "start from bank kernels (whole filters" in text
        assert re.search(r"\n  main +baseline,filterinit,filterinit\+adv1\n", text)
    if mod is train:
        assert all(name in text for name in PACKAGED)      # the packaged banks, from the bank's own table


# --------------------------------------------------------------------------- report
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("sweeps")
    bank = make_bank_file(root / "bank.safetensors")
    for name, lam, init in (("a", "0", "default"), ("b", "1", "bank")):    # baseline; filterinit+adv1
        assert run_main(train.main, ["--data-root", str(data), "--bank", str(bank), "--lambda", lam,
                                     "--init", init, "--train-size", "20",
                                     "--out", str(root / name / "r"), *FAST]) == 0
    return root


def test_report_writes_inside_the_runs_folder_and_never_over_another_report(two_runs, tmp_path, capsys,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = two_runs / "a", two_runs / "b"
    assert run_main(report.main, [str(a)]) == 0
    assert (a / "report.md").exists() and (a / "figures").is_dir() and not (tmp_path / "docs").exists()
    assert run_main(report.main, [str(a)]) == 0                          # the same report: regenerated
    assert run_main(report.main, [str(b), "--out", str(a / "report.md")]) == 2
    assert "holds the report of" in capsys.readouterr().err
    assert run_main(report.main, [str(b), "--out", str(a / "report.md"), "--force"]) == 0
    (tmp_path / "notes.md").write_text("my notes\n")
    assert run_main(report.main, [str(a), "--out", "notes.md"]) == 2
    assert "not a fastreg report" in capsys.readouterr().err
    assert (tmp_path / "notes.md").read_text() == "my notes\n"


def test_report_of_one_size_has_no_empty_bank_init_table(two_runs, tmp_path):
    out = tmp_path / "r.md"
    assert run_main(report.main, [str(two_runs / "a"), str(two_runs / "b"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "Paired difference to bank init" not in text and (tmp_path / "figures" / "r_acc_vs_size.png").exists()
