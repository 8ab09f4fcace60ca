"""A newcomer's path (issue 25): the README example on models fastreg has never seen (depthwise,
grouped, dilated and 1x1 convs), λ that means the same for 1 layer or 50, the main job's
summary, small finished runs, a report that never writes over the project's docs, and one
clear line for each mistake a new user makes."""
from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from fastreg import AdversarialRegularizer, KernelBank, init_from_bank, packaged_bank, report, sweep, train
from fastreg.cli import run_main
from fastreg.errors import BankError, UsageError
from fastreg.layers import conv_layers, select_layers
from fastreg.prior import GaussianPrior
from helpers import make_bank_file, make_npz_data, smooth_kernels
from test_readme import _check_trained, _run_example

torchvision = pytest.importorskip("torchvision")
FAST = ["--width", "0.125", "--epochs", "2", "--eval-size", "50", "--batch-size", "50"]


class Custom(nn.Module):
    """Depthwise 3x3 and 5x5, grouped, dilated and 1x1 convs, in a nested Sequential and a
    ModuleDict: names like ``blocks.0.dw`` and ``heads.b.conv``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.blocks = nn.Sequential(
            nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(), nn.Conv2d(16, 32, 1)),
            nn.Sequential(nn.Conv2d(32, 32, 5, padding=2, groups=32), nn.ReLU(),
                          nn.Conv2d(32, 32, 3, padding=2, dilation=2, groups=2)))
        self.heads = nn.ModuleDict({"a": nn.Conv2d(32, 32, 3, padding=1, groups=8),
                                    "b": nn.Sequential(nn.Conv2d(32, 10, 1))})
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.heads["a"](self.blocks(torch.relu(self.stem(x))))
        return self.pool(self.heads["b"](torch.relu(h))).flatten(1)


MODELS = {
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(num_classes=10),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(num_classes=10),
    "resnet18": lambda: torchvision.models.resnet18(num_classes=10),
    "custom": Custom,
}


def _spatial(model: nn.Module) -> list[str]:
    return [n for n, c in conv_layers(model).items() if c.kernel_size[0] >= 3]


@pytest.mark.parametrize("name", list(MODELS))
def test_readme_example_on_models_with_depthwise_and_grouped_convs(name):
    """The README example pasted as is: every conv of 3x3 or more starts from bank kernels at
    its own scale, and the model and every D train."""
    torch.manual_seed(0)
    model = MODELS[name]()
    model.eval() if name == "mobilenet_v3_small" else None   # batch of 8 at 1x1 spatial: BN in eval
    layers = _spatial(model)
    fresh = {n: conv_layers(model)[n].weight.detach().clone() for n in layers}
    ns = _run_example(model)
    _check_trained(ns, layers)
    for n in layers:
        w, w0 = conv_layers(model)[n].weight.detach(), fresh[n]
        assert (w - w0).norm() / w0.norm() > 0.5, n                  # replaced by bank draws
        assert abs(float(w.std() / w0.std()) - 1) < 0.1, n


def test_depthwise_filters_are_bank_kernels_and_grouped_ones_fit_or_fall_back(capsys):
    """A depthwise filter is one kxk kernel: it is drawn whole (from every bank kernel of its
    size); a grouped filter takes bank filters with the group's input count, else slices, and
    the note names the model's layer."""
    torch.manual_seed(0)
    model = Custom()
    used = init_from_bank(model, packaged_bank(), "all")
    assert used == {"stem": "filter", "blocks.0.0": "filter", "blocks.1.0": "filter",   # RGB; depthwise
                    "blocks.1.2": "filter",            # 16 inputs per group: ResNet-20's 16-channel convs
                    "heads.a": "slice"}                # 4 inputs per group: no such bank filters
    err = capsys.readouterr().err
    assert "heads.a (4 inputs per filter" in err and err.count("\n") == 1 and "resnet20.conv1+" not in err
    bank = packaged_bank()
    dw = conv_layers(model)["blocks.1.0"].weight            # 5x5 depthwise: one bank 5x5 kernel per filter
    pool = bank.units(bank.plan("blocks.1.0", dw.shape, "filter").src, "slice")
    unit = lambda x: torch.nn.functional.normalize(x.detach().reshape(len(x), -1), dim=1)  # noqa: E731
    d = torch.cdist(unit(dw), unit(pool))
    assert float(d.min(1).values.max()) < 2e-3 < 0.5 < float(d.median())     # each filter is a bank kernel, rescaled


def test_whole_filter_d_and_gaussian_prior_on_depthwise_and_grouped_convs(capsys):
    torch.manual_seed(0)
    model = Custom()
    bank = packaged_bank()
    reg = AdversarialRegularizer(model, bank, "all", unit="filter")
    assert reg.units == {"stem": "filter", "blocks.0.0": "filter", "blocks.1.0": "filter",
                         "blocks.1.2": "filter", "heads.a": "slice"}
    assert reg.disc("blocks.1.0").dim == 25 and reg.disc("stem").dim == 27 and reg.disc("heads.a").dim == 9
    prior = GaussianPrior(model, bank, "all", weight=1.0)
    x = torch.randn(2, 3, 16, 16)
    loss = model(x).square().mean() + reg.generator_loss() + prior.generator_loss()
    loss.backward()
    assert all(conv_layers(model)[n].weight.grad.abs().sum() > 0 for n in reg.layers)
    reg.discriminator_step()
    assert "heads.a" in capsys.readouterr().err


def test_messages_name_the_models_layer():
    bank = KernelBank({"k3": smooth_kernels(100, 3)})
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 11))
    with pytest.raises(BankError, match=r"no 11x11 layer for '1'"):
        init_from_bank(model, bank, "all")
    with pytest.raises(UsageError, match=r"no conv layer with square kernels of 3x3 or more, only 0 \(1x1\)"):
        select_layers(nn.Sequential(nn.Conv2d(3, 8, 1)), "all")
    with pytest.raises(UsageError, match="no nn.Conv2d layer"):
        select_layers(nn.Sequential(nn.Linear(3, 8)), "all")


# ------------------------------------------------------------------ λ over many layers
def test_lambda_means_the_same_for_one_layer_or_fifty():
    """``layers="all"`` at λ = 1 on MobileNetV3-small (12 convs of 3x3 or 5x5): a G loss of the
    order of one layer's (the mean over layers), not 12 times it; ``layer_weights="sum"`` keeps
    the old sum."""
    torch.manual_seed(0)
    model = MODELS["mobilenet_v3_small"]()
    bank = packaged_bank()
    all_layers = _spatial(model)
    assert len(all_layers) == 12
    one = float(AdversarialRegularizer(model, bank, all_layers[:1], lam=1.0).generator_loss().detach())
    torch.manual_seed(1)
    mean = AdversarialRegularizer(model, bank, "all", lam=1.0)
    torch.manual_seed(1)
    summed = AdversarialRegularizer(model, bank, "all", lam=1.0, layer_weights="sum")
    g_mean, g_sum = float(mean.generator_loss().detach()), float(summed.generator_loss().detach())
    assert 0.5 < g_mean / one < 2.0
    assert g_sum == pytest.approx(g_mean * len(all_layers), rel=1e-5)
    mean.discriminator_step()
    stats = mean.pop_stats()
    assert stats["g_loss"] == pytest.approx(g_mean, rel=1e-5)       # the logged value is the one used
    # one D per size: each D's loss weighted by its layers' share of all layers
    torch.manual_seed(1)
    per_size = AdversarialRegularizer(model, bank, "all", lam=1.0, share="size")
    assert 0.5 < float(per_size.generator_loss().detach()) / one < 2.0


def test_gaussian_prior_weight_is_a_mean_over_layers():
    torch.manual_seed(0)
    model = Custom()
    bank = packaged_bank()
    mean = GaussianPrior(model, bank, "all", weight=2.0)
    summed = GaussianPrior(model, bank, "all", weight=2.0, layer_weights="sum")
    per = [float(mean.nll_per_weight(n).detach()) for n in mean.layers]
    assert float(mean.generator_loss().detach()) == pytest.approx(2.0 * sum(per) / len(per), rel=1e-6)
    assert float(summed.generator_loss().detach()) == pytest.approx(2.0 * sum(per), rel=1e-6)


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


# -------------------------------------------------------------------------- --help
@pytest.mark.parametrize("mod", [train, sweep, report])
def test_help_gives_every_option_a_text_and_each_default_once(mod, capsys):
    from fastreg import collect
    parser = mod.build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.option_strings
    text = parser.format_help()
    assert "(default: None)" not in text and not re.search(r"default[^\n]*\(default:", text), text
    assert "CIFAR-10 classifier" not in text
    if mod is sweep:
        assert "filterinit+adv1" in text and "start from bank kernels (whole filters)" in text
    del collect


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
