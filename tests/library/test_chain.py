"""Priors for a whole network: the class-disjoint protocol's class filter, chain init
(exact with matching widths, coherent channels under Weight Selection for a narrower target),
fine-tuning's start, L2-SP against a float64 reference, and one line for a mismatch."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from fastreg.lab import collect, sweep, train
from fastreg.chain import (L2SP, chain_init, chain_layers, finetune_init, head, load_sources, norm_after,
                           save_sources, take)
from fastreg.lab.classes import parse_classes
from fastreg.lab.cli import run_main
from fastreg.lab.data import source_sets, target_sets
from fastreg.errors import UsageError
from fastreg.layers import select_layers
from fastreg.models import build_model
from helpers import make_npz_data


# ------------------------------------------------------------------- the class filter
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_npz_data(tmp_path_factory.mktemp("data"), per_class_train=60, per_class_test=7)


def test_classes_parse_by_index_or_name():
    assert parse_classes("9,5,dog,7,8".replace("dog", "6"), "cifar10", 10) == [5, 6, 7, 8, 9]
    assert parse_classes("dog,frog", "cifar10", 10) == [5, 6]
    assert parse_classes(",".join(map(str, range(10))), "cifar10", 10) is None     # all: no filter
    for bad, msg in [("5,5", "twice"), ("3", "at least 2"), ("cow,dog", "not a class"), ("10,1", "not a class")]:
        with pytest.raises(UsageError, match=msg):
            parse_classes(bad, "cifar10", 10)


def test_target_and_source_sets_keep_only_the_classes_relabelled(data):
    full_train, full_test, k = target_sets(data, 20, 0, "cpu")
    train, test, k5 = target_sets(data, 20, 0, "cpu", classes=[5, 6, 7, 8, 9])
    assert (k, k5) == (10, 5)
    raw = np.load(data / "cifar10_train.npz")["labels"]
    assert sorted(set(train.y.tolist())) == [0, 1, 2, 3, 4] and len(train) == 20
    assert np.array_equal(raw[train.index] - 5, train.y.numpy())               # label = class - 5
    assert len(test) == 5 * 7 and set(test.y.tolist()) == {0, 1, 2, 3, 4}
    # each kept class draws from its own part of the same target pool as the ten-class protocol
    pool_imgs = {tuple(i) for i in (full_train.index,)}
    assert pool_imgs
    src_train, src_test, ks = source_sets("cifar10", data, "cpu", classes=[0, 1, 2, 3, 4])
    assert ks == 5 and set(raw[src_train.index].tolist()) == {0, 1, 2, 3, 4}
    assert not set(src_train.index) & set(train.index)                        # disjoint classes and images


def test_train_records_classes_and_tests_on_them(data, tmp_path):
    out = tmp_path / "r"
    assert run_main(train.main, ["--data-root", str(data), "--classes", "5,6,7,8,9", "--train-size", "10",
                                 "--bank", "none", "--width", "0.125", "--epochs", "1", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["classes"] == [5, 6, 7, 8, 9]
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["test_n"] == 35


# ------------------------------------------------------------------------ chain init
def _resnet(width=1.0, num_classes=5, seed=0):
    torch.manual_seed(seed)
    m = build_model("resnet20", num_classes, width)
    with torch.no_grad():       # norms away from their defaults, so copying them matters
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 2)
    return m.eval()


def test_chain_layers_include_the_projections_inside_the_span():
    m = build_model("resnet20")
    chain = chain_layers(m, select_layers(m, "all"))
    assert len(chain) == 21 and "layer2.0.shortcut.0" in chain and "layer3.0.shortcut.0" in chain
    assert chain_layers(m, ["conv1", "layer1.0.conv1"]) == ["conv1", "layer1.0.conv1"]
    assert norm_after(m)["layer2.0.shortcut.0"] == "layer2.0.shortcut.1" and norm_after(m)["conv1"] == "bn1"
    assert head(m) == "fc"


def test_chain_init_reproduces_the_source_function_with_the_same_widths():
    src = _resnet(seed=1)
    x = torch.randn(4, 3, 32, 32)
    target = _resnet(seed=2)
    assert not torch.allclose(target(x), src(x))
    got = chain_init(target, [_resnet(seed=3).state_dict(), src.state_dict()], "all", seed=1, norms=True)
    assert got["source"] == 1 and len(got["convs"]) == 21 and len(got["norms"]) == 21
    target.fc.load_state_dict(src.fc.state_dict())                       # the same head
    assert torch.equal(target(x), src(x))
    convs_only = _resnet(seed=2)
    chain_init(convs_only, [src.state_dict()], "all", norms=False)
    assert torch.equal(convs_only.layer3[2].conv2.weight, src.layer3[2].conv2.weight)
    assert not torch.equal(convs_only.bn1.weight, src.bn1.weight)        # norms left as they were


def test_chain_init_keeps_channels_coherent_under_weight_selection():
    """A width-1 source whose channels outside Weight Selection's indices are zero everywhere
    computes the same function as the width-0.5 target built from it: only if every layer, the
    residual additions and the projections took the same channel indices."""
    src = _resnet(1.0, seed=1)
    sd = src.state_dict()
    kept = {c: torch.arange(c // 2) * 2 for c in (16, 32, 64)}           # floor(i * C / (C/2))
    with torch.no_grad():
        for k, t in sd.items():
            if t.dim() == 0 or "num_batches" in k:
                continue
            for d, n in enumerate(t.shape[:2] if t.dim() > 1 else t.shape):
                if n in kept and not (k.startswith("fc") and d == 0):
                    drop = torch.ones(n, dtype=torch.bool)
                    drop[kept[n]] = False
                    idx = [slice(None)] * t.dim()
                    idx[d] = drop
                    t[tuple(idx)] = 1.0 if k.endswith("running_var") else 0.0
    src.load_state_dict(sd)
    target = _resnet(0.5, seed=2)
    chain_init(target, [sd], "all", norms=True)
    with torch.no_grad():
        target.fc.weight.copy_(take(src.fc.weight, target.fc.weight))
        target.fc.bias.copy_(src.fc.bias)
    x = torch.randn(3, 3, 32, 32)
    assert torch.allclose(target(x), src(x), atol=1e-5), (target(x) - src(x)).abs().max()
    # a wider target: the source fills the first channels, the rest keep the target's init
    wide = build_model("resnet20", 5, 2.0)
    before = wide.conv1.weight.detach().clone()
    chain_init(wide, [sd], "conv1")
    assert torch.equal(wide.conv1.weight[:16], src.conv1.weight) and torch.equal(wide.conv1.weight[16:], before[16:])


def test_finetune_copies_every_layer_but_the_head():
    src, target = _resnet(seed=1), _resnet(seed=2)
    fc0 = target.fc.weight.detach().clone()
    got = finetune_init(target, [src.state_dict()])
    assert got["head"] == "fc" and torch.equal(target.fc.weight, fc0)
    assert torch.equal(target.layer2[0].shortcut[1].running_var, src.layer2[0].shortcut[1].running_var)
    assert torch.equal(target.layer3[1].conv1.weight, src.layer3[1].conv1.weight)


def test_a_source_of_another_architecture_is_refused_in_one_line(tmp_path, data, capsys):
    save_sources({"seed0": _resnet().state_dict()}, tmp_path / "src.safetensors", {"architecture": "resnet20"})
    model = build_model("dwpnet", 5, 0.125)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UsageError, match="conv1.weight has 7x7 kernels here and 3x3 in the source"):
        chain_init(model, load_sources(tmp_path / "src.safetensors")[0], "all")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())     # nothing half-copied
    for sources in (str(tmp_path / "src.safetensors"), "resnet20_c04"):          # 3x3 sources, a 7x7 conv1
        rc = run_main(train.main, ["--data-root", str(data), "--init", "chain", "--sources", sources,
                                   "--reg-layers", "all", "--width", "0.125", "--train-size", "10", "--epochs", "1",
                                   "--out", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert rc == 2 and "never cut or padded" in err and err.count("\n") == 1 and not (tmp_path / "r").exists()
        assert err.startswith("error: --sources: chain init: conv1.weight")
    rc = run_main(train.main, ["--data-root", str(data), "--init", "chain", "--out", str(tmp_path / "r")])
    assert rc == 2 and "needs --sources" in capsys.readouterr().err


def test_sources_file_round_trip_in_half_precision(tmp_path):
    a, b = _resnet(seed=1).state_dict(), _resnet(seed=2).state_dict()
    save_sources({"seed1": b, "seed0": a}, tmp_path / "s.safetensors", {"classes": "[0, 1, 2, 3, 4]"})
    got, meta = load_sources(tmp_path / "s.safetensors")
    assert meta["classes"] == [0, 1, 2, 3, 4] and len(got) == 2
    assert torch.allclose(got[0]["conv1.weight"], a["conv1.weight"], rtol=1e-3, atol=1e-4)   # seed order
    assert got[0]["bn1.num_batches_tracked"].dtype == torch.int64


# --------------------------------------------------------------------------- L2-SP
def test_l2sp_value_and_gradient_against_float64():
    torch.manual_seed(0)
    m = _resnet(0.25).train()
    mods = ["conv1", "layer1.0.conv1", "bn1"]
    reg = L2SP(m, mods, alpha=0.37)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    named = dict(m.named_parameters())
    start = {k: getattr(reg, f"start_{i}") for i, k in enumerate(reg.names)}
    assert set(reg.names) == {"conv1.weight", "layer1.0.conv1.weight", "bn1.weight", "bn1.bias"}
    ref = sum(((named[k].detach().double() - start[k].double()) ** 2).sum() for k in reg.names) * 0.37 / 2
    loss = reg.generator_loss()
    assert abs(float(loss.detach()) - float(ref)) <= 1e-5 * float(ref)
    loss.backward()
    for k in reg.names:
        want = 0.37 * (named[k].detach().double() - start[k].double())
        err = (named[k].grad.double() - want).norm() / want.norm()
        assert err < 1e-5, k
    assert named["layer1.0.conv2.weight"].grad is None                    # outside the modules: untouched
    state = reg.checkpoint_state()
    fresh = L2SP(m, mods, alpha=0.37)
    fresh.load_checkpoint_state(state)
    assert all(torch.equal(getattr(fresh, f"start_{i}"), getattr(reg, f"start_{i}")) for i in range(len(reg.names)))


# ------------------------------------------------------------------- end to end, tiny
def test_collect_with_classes_then_chain_finetune_and_l2sp_runs(data, tmp_path):
    src = tmp_path / "src"
    assert run_main(collect.main, ["--data-root", str(data), "--preset", "tiny", "--seeds", "0,1", "--classes",
                                   "0,1,2,3,4", "--layers", "all", "--out", str(src)]) == 0
    from fastreg.bank import KernelBank
    bank = KernelBank.load(src / "bank.safetensors")
    assert json.loads(bank.meta["classes"]) == [0, 1, 2, 3, 4]
    rows = json.loads(bank.meta["rows_per_model"])
    assert rows["conv2"] * 2 == len(bank.layers["conv2"])                 # model boundaries recorded
    sources, meta = load_sources(src / "sources.safetensors")
    assert len(sources) == 2 and meta["classes"] == [0, 1, 2, 3, 4]
    from_bank, about = load_sources(src / "bank.safetensors")              # a bank: its convs, per model
    assert about["partial"] and set(from_bank[1]) == {f"conv{i}.weight" for i in (1, 2, 3, 4)}
    for k, w in from_bank[1].items():
        assert torch.allclose(w, sources[1][k], rtol=1e-3, atol=1e-4), k    # the sources file is fp16
    m = build_model("dwpnet", 5, 0.125)
    with pytest.raises(UsageError, match="no norm layers"):
        chain_init(m, from_bank, "all", norms=True, partial=True)
    out = tmp_path / "sw"
    assert run_main(sweep.main, ["--sizes", "10", "--methods", "baseline,chaininit,chaininit+l2sp,finetune",
                                 "--seeds", "0,1", "--width", "0.125", "--epochs", "2", "--classes", "5,6,7,8,9",
                                 "--reg-layers", "all", "--data-root", str(data), "--sources", str(src),
                                 "--bank", str(src / "bank.safetensors"), "--out", str(out),
                                 "--", "--eval-size", "20", "--batch-size", "10"]) == 0
    assert run_main(train.main, ["--data-root", str(data), "--init", "finetune", "--sources", str(src / "bank.safetensors"),
                                 "--out", str(tmp_path / "ft")]) == 2                # fine-tuning needs whole networks
    cfg = json.loads((out / "n10/chaininit+l2sp/s1/config.json").read_text())
    assert (cfg["init"], cfg["prior"], cfg["classes"]) == ("chain", "l2sp", [5, 6, 7, 8, 9])
    rows = [json.loads(l) for l in (out / "n10/chaininit+l2sp/s1/metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["l2sp_dist2"] > 0


def test_report_never_pairs_across_protocols(data, tmp_path):
    """A class-disjoint run pairs with the baseline of its own classes, never with the
    ten-class one: each protocol has its own section, headed by its classes."""
    from fastreg import report
    common = ["--data-root", str(data), "--train-size", "10", "--width", "0.125", "--epochs", "1",
              "--eval-size", "20", "--batch-size", "10", "--bank", str(_bank(tmp_path)), "--init", "default"]
    for name, extra in (("all", []), ("c59", ["--classes", "5,6,7,8,9"])):
        for lam in ("0", "1"):
            argv = common + extra + ["--lambda", lam, "--out", str(tmp_path / "runs" / name / f"lam{lam}")]
            assert run_main(train.main, argv) == 0
    out = tmp_path / "r.md"
    assert run_main(report.main, [str(tmp_path / "runs"), "--out", str(out)]) == 0
    text = out.read_text()
    one, two = text.split("## Protocol 1: ", 1)[1].split("## Protocol 2: ")
    assert one.startswith("CIFAR-10, all 10 classes") and two.startswith("CIFAR-10, 5 classes (dog, frog")
    for section in (one, two):                                                  # paired with its own baseline
        assert section.count("| 10 | adv1 | conv1 | 0 (1) |") == 1
    assert "(vs baseline" not in text                                           # no cross-protocol pairing


def _bank(tmp_path):
    from helpers import make_bank_file
    path = tmp_path / "bank.safetensors"
    return path if path.exists() else make_bank_file(path)
