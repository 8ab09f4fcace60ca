"""The regularizer for any PyTorch model: layers by full name or selector, nested
and wrapped models, many layers with one D per layer or per kernel size, banks from a
checkpoint on disk, own images, and one clear line for every bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastreg.lab import collect, train
from fastreg.bank import KernelBank
from fastreg.lab.cli import run_main
from fastreg.errors import UsageError
from fastreg.layers import conv_layers, select, select_layers, unwrap
from fastreg.models import build_model, resnet18_cifar
from fastreg.regularizer import AdversarialRegularizer
from helpers import make_npz_data, smooth_kernels


def _bank3(n: int = 600) -> KernelBank:
    """A 3×3 bank of two layers (pooled for any 3×3 conv) plus a 7×7 one."""
    return KernelBank({"a.conv": smooth_kernels(n, 3), "b.conv": smooth_kernels(n, 3, 1),
                       "stem": smooth_kernels(300, 7, 2)}, {"filter_rows": '{"a.conv": 4, "b.conv": 4}'})


# ------------------------------------------------------------------------------ selectors
def test_selectors_names_globs_all_and_sizes():
    m = build_model("resnet20")
    shapes = {n: tuple(c.kernel_size) for n, c in conv_layers(m).items()}
    assert len(shapes) == 21 and shapes["layer2.0.shortcut.0"] == (1, 1)
    assert select_layers(m, "layer1.0.conv1") == ["layer1.0.conv1"]
    assert select_layers(m, "layer*.*.conv1") == [f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)]
    assert len(select_layers(m, "all")) == 19 == len(select_layers(m, "k3"))   # 1x1 projections left out
    assert select_layers(m, "layer3.2.conv2,conv1") == ["conv1", "layer3.2.conv2"]   # model order
    for bad, msg in [("layer9.conv1", "unknown layer"), ("k5", "matches no conv layer"),
                     ("layer2.0.shortcut.0", "1x1 kernels"), ("conv1,conv1", "twice"), ("", "empty")]:
        with pytest.raises(UsageError, match=msg):
            select_layers(m, bad)
    with pytest.raises(UsageError, match="non-square"):
        select({"c": (3, 1)}, "c")



def test_patterns_serve_the_sizes_a_bank_holds_and_names_stay():
    """Given a bank's sizes, ``all``/``kN``/globs drop the convs of other sizes and say which;
    a name given exactly, or one the bank map serves, is kept."""
    from fastreg.layers import selection
    shapes = {"stem": (4, 4), "a": (3, 3), "b": (7, 7), "p": (1, 1)}
    assert selection(shapes, "all", sizes={3, 7}) == (["a", "b"], ["stem"])
    assert selection(shapes, "all", sizes={3, 7}, mapped={"stem"}) == (["stem", "a", "b"], [])
    assert selection(shapes, "stem,k3", sizes={3, 7}) == (["stem", "a"], [])
    assert selection(shapes, "all,stem", sizes={3, 7}) == (["stem", "a", "b"], [])
    assert selection(shapes, "all") == (["stem", "a", "b"], [])
    with pytest.raises(UsageError, match=r"sizes the bank lacks \(it has 3x3, 7x7\): stem \(4x4\)"):
        selection(shapes, "k4", sizes={3, 7})

def test_wrapped_models_resolve_to_the_same_layers():
    m = build_model("resnet20")
    names = list(conv_layers(m))
    assert list(conv_layers(nn.DataParallel(m))) == names
    assert list(conv_layers(torch.compile(m))) == names
    assert unwrap(torch.compile(nn.DataParallel(m))) is m


def test_grouped_and_depthwise_convs():
    m = nn.Sequential(nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 16, 5, groups=2), nn.Flatten())
    bank = KernelBank({"k3": smooth_kernels(200, 3), "k5": smooth_kernels(200, 5)})
    reg = AdversarialRegularizer(m, bank, ["0", "1"], lam=1.0)
    assert reg._fake("0", 0).shape == (8, 3, 3) and reg._fake("1", 1).shape == (64, 5, 5)
    loss = reg.generator_loss()
    loss.backward()
    assert m[0].weight.grad.abs().sum() > 0 and m[1].weight.grad.abs().sum() > 0
    reg.discriminator_step()


# ----------------------------------------------------------- many layers, nested names
@pytest.mark.parametrize("share", ["layer", "size"])
def test_every_3x3_conv_of_a_torchvision_resnet18(share):
    """Nested, dotted layer names: D keys, buffers, checkpoint and metrics keys all work."""
    torch.manual_seed(0)
    model = resnet18_cifar(10)
    layers = select_layers(model, "k3")
    assert len(layers) == 17 and "layer1.0.conv1" in layers
    reg = AdversarialRegularizer(model, _bank3(), layers, lam=1.0, share=share, fake_max=256)
    assert len(reg.discs) == (17 if share == "layer" else 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    d0 = [p.detach().clone() for p in reg.discs.parameters()]
    for _ in range(2):
        g = reg.generator_loss()
        loss = F.cross_entropy(model(x), y) + g
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(g) and model.layer4[1].conv2.weight.grad.abs().sum() > 0
        opt.step()
        reg.discriminator_step()
    assert any(not torch.equal(a, b) for a, b in zip(d0, reg.discs.parameters()))   # D updated
    stats = reg.pop_stats()
    assert all(np.isfinite(v) for v in stats.values())
    assert ("g_loss/layer1.0.conv1" in stats) == (share == "layer") and ("g_loss/k3" in stats) == (share == "size")
    state = reg.checkpoint_state()
    assert not any(k.startswith("bank_") for k in state["module"])        # banks are not saved
    fresh = AdversarialRegularizer(model, _bank3(), layers, lam=1.0, share=share, fake_max=256)
    fresh.load_checkpoint_state(state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.discs.parameters(), reg.discs.parameters()))


def test_banks_move_with_the_module():
    model = build_model("resnet20", width=0.25)
    reg = AdversarialRegularizer(model, _bank3(), ["conv1"], lam=1.0)
    assert "bank_conv1" in dict(reg.named_buffers())
    reg.double()
    assert reg.banks["conv1"].dtype == torch.float64


def test_pooled_bank_layers_and_bank_map():
    bank = _bank3()
    assert bank.source("layer1.0.conv1", 3) == ("a.conv", "b.conv")      # no such name: pooled by size
    assert bank.source("x", 3, {"x": ["b.conv"]}) == ("b.conv",)
    assert len(bank.units(("a.conv", "b.conv"), "slice")) == 1200
    assert bank.units(("a.conv", "b.conv"), "filter").shape == (300, 4, 9)
    with pytest.raises(Exception, match="no 5x5 kernels for layer 'conv2'"):
        bank.source("conv2", 5)
    with pytest.raises(Exception, match="no bank layer 'zz'"):
        bank.source("x", 3, {"x": ["zz"]})


# -------------------------------------------------------------------- banks from anything
def _resnet18_checkpoint(path):
    torch.manual_seed(0)
    sd = resnet18_cifar(10).state_dict()
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, path)   # a DDP checkpoint
    return sd


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_collect_from_a_resnet18_checkpoint(tmp_path, suffix, capsys):
    ck = tmp_path / f"r18{suffix}"
    sd = _resnet18_checkpoint(ck)
    out = tmp_path / "bank"
    assert run_main(collect.main, ["--from-checkpoint", str(ck), "--layers", "layer1.*", "--out", str(out),
                                   "--max-kernels", "1000"]) == 0
    bank = KernelBank.load(out / "bank.safetensors")
    assert list(bank.layers) == [f"layer1.{b}.conv{c}" for b in (0, 1) for c in (1, 2)]
    w = sd["layer1.0.conv1.weight"]
    got = bank.filters("layer1.0.conv1")
    assert got.shape == (15, 64, 3, 3) and torch.equal(got[0], w[0]) and torch.equal(got[-1], w[-1])
    assert bank.meta["checkpoint_sha256"] and "r18" in bank.meta["source"]
    assert json.loads(bank.meta["filter_rows"])["layer1.0.conv1"] == 64
    assert run_main(collect.main, ["--from-checkpoint", str(ck), "--out", str(tmp_path / "all")]) == 0
    assert len(KernelBank.load(tmp_path / "all" / "bank.safetensors").layers) == 17   # every 3x3 conv
    assert run_main(collect.main, ["--from-checkpoint", str(ck), "--layers", "layer1.0.conv1", "--prefix", "r18.",
                                   "--out", str(tmp_path / "pre")]) == 0
    pre = KernelBank.load(tmp_path / "pre" / "bank.safetensors")
    assert list(pre.layers) == ["r18.layer1.0.conv1"] and torch.equal(pre.filters("r18.layer1.0.conv1"), w)
    # no longer matched by name: a model's layer1.0.conv1 draws from the pool of 3x3 layers
    assert pre.source("layer1.0.conv1", 3) == ("r18.layer1.0.conv1",)


def test_train_resnet20_every_conv_and_own_images(tmp_path):
    """--arch resnet20 --reg-layers all on an ImageFolder of PNGs the test writes."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, per in (("train", 6), ("val", 3)):
        for c in range(2):
            d = tmp_path / "imgs" / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(per):
                img = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
                img[..., c] = 255                                # a learnable colour per class
                Image.fromarray(img).save(d / f"{i}.png")
    bank = tmp_path / "b3.safetensors"
    _bank3().save(bank)
    out = tmp_path / "run"
    assert run_main(train.main, ["--dataset", "imagefolder", "--data-root", str(tmp_path / "imgs"),
                                 "--image-size", "16", "--train-size", "8", "--arch", "resnet20",
                                 "--width", "0.25", "--reg-layers", "all", "--bank", str(bank),
                                 "--epochs", "2", "--eval-size", "4", "--fake-max", "64",
                                 "--d-share", "size", "--out", str(out)]) == 0
    final = json.loads((out / "final.json").read_text())
    assert 0 <= final["test_acc"] <= 1 and len(final["reg_layers"]) == 19
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "g_loss/k3" in rows[-1] and rows[-1]["test_n"] == 6
    from safetensors.torch import load_file
    assert "layer3.2.conv2" in load_file(out / "final_kernels.safetensors")
    # resume keeps working with dotted layer names in the checkpoint
    assert run_main(train.main, ["--dataset", "imagefolder", "--data-root", str(tmp_path / "imgs"),
                                 "--image-size", "16", "--train-size", "8", "--arch", "resnet20",
                                 "--width", "0.25", "--reg-layers", "all", "--bank", str(bank),
                                 "--epochs", "2", "--eval-size", "4", "--fake-max", "64",
                                 "--d-share", "size", "--out", str(out), "--resume"]) == 0


# ------------------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_npz_data(tmp_path_factory.mktemp("data"), per_class_train=25, per_class_test=5)


FAST = ["--epochs", "1", "--eval-size", "20", "--train-size", "20"]


def _rc(mod, argv):
    try:
        return run_main(mod.main, argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("extra,msg", [
    (["--arch", "resnet20", "--reg-layers", "layer7.*"], "matches no conv layer"),
    (["--arch", "resnet20", "--reg-layers", "head"], "unknown layer 'head'"),
    (["--arch", "resnet20", "--reg-layers", "k5"], "matches no conv layer"),
    (["--arch", "resnet20", "--reg-layers", "layer2.0.shortcut.0"], "1x1 kernels"),
    (["--arch", "resnet20", "--reg-layers", "all", "--bank", "DEFAULT"], "only convs of sizes the bank lacks (it has 5x5, 7x7)"),
    (["--arch", "resnet20", "--reg-layers", "conv1", "--bank", "DEFAULT"],
     "bank has no 3x3 kernels for layer 'conv1' (it has 5x5, 7x7)"),
    (["--arch", "resnet99"], "--arch: unknown arch 'resnet99'"),
    (["--arch", "resnet20", "--bank-map", "conv1"], "--bank-map wants"),
])
def test_bad_layer_input_one_line_exit_2_nothing_written(data, tmp_path, capsys, extra, msg):
    bank = tmp_path / "b3.safetensors"
    _bank3().save(bank)
    from fastreg import DEFAULT_BANK                                 # 7x7 and 5x5 layers only
    extra = [str(DEFAULT_BANK) if e == "DEFAULT" else e for e in extra]
    out = tmp_path / "run"
    argv = ["--data-root", str(data), "--bank", str(bank), "--out", str(out), "--width", "0.25", *FAST, *extra]
    assert _rc(train, argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and not out.exists(), err


def test_bad_checkpoints_one_line_exit_2_nothing_written(tmp_path, capsys):
    no_convs = tmp_path / "mlp.pth"
    torch.save(nn.Linear(4, 2).state_dict(), no_convs)
    evil = tmp_path / "evil.pth"
    torch.save({"model": nn.Conv2d(3, 4, 3)}, evil)                 # a pickled module, not weights
    for ck, msg in [(no_convs, "no conv weights"), (evil, "refused to load"),
                    (tmp_path / "missing.pth", "no such checkpoint")]:
        out = tmp_path / f"out-{ck.stem}"
        assert _rc(collect, ["--from-checkpoint", str(ck), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and not out.exists(), err


def test_fake_max_auto_keeps_small_layers_whole_and_caps_many():
    from fastreg.regularizer import AUTO_ROWS
    dwp = build_model("dwpnet", width=0.5)
    bank = KernelBank({"conv1": smooth_kernels(300, 7), "conv2": smooth_kernels(300, 5)})
    assert AdversarialRegularizer(dwp, bank, ["conv1", "conv2"]).fake_max is None   # 192 + 8192 kernels
    r18 = resnet18_cifar(10)
    reg = AdversarialRegularizer(r18, _bank3(), select_layers(r18, "k3"), fake_max="auto")
    assert reg.fake_max == AUTO_ROWS // 17
    with pytest.raises(ValueError):
        AdversarialRegularizer(dwp, bank, ["conv1"], fake_max=1)
