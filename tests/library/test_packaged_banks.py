"""The banks shipped in the package: format, provenance and finiteness.

``KernelBank.load`` validates format, shapes, dtypes and finiteness; these tests add what a
user needs to trust a shipped bank: where it came from, how good its source models were,
and that its recipe in ``docs/banks/`` is the one recorded inside it."""
import json
from pathlib import Path

import pytest
import torch

from fastreg.bank import DEFAULT_BANK, DEFAULT_BANK_NAME, PACKAGED, KernelBank, bank_file, packaged_bank
from fastreg.lab.banks import bank_label

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_packaged_bank_is_valid_and_says_where_it_came_from(name):
    bank = KernelBank.load(bank_file(name))               # validates format, shape, finiteness
    meta = bank.meta
    assert meta["format"] == "fastreg-bank/1" and meta["dataset"] == "cifar10"
    assert meta["source_split"].startswith("cifar10 train minus the target pool")   # never the target pool
    seeds = json.loads(meta["seeds"])
    acc = json.loads(meta["source_test_acc"])
    assert seeds == [0, 1, 2, 3, 4] and sorted(map(int, acc)) == seeds
    assert all(0.5 < a < 1.0 for a in acc.values())
    for t in bank.layers.values():
        assert t.dtype == torch.float32 and torch.isfinite(t).all() and t.abs().max() > 0
        assert t.std() > 0                                # not a constant fill
    recipe = json.loads(meta["recipe"])
    doc = json.loads((DOCS / "banks" / f"{name}.json").read_text())
    for k in ("width", "epochs", "batch_size", "lr", "weight_decay", "arch"):
        if k in recipe:
            assert doc[k] == recipe[k], (name, k)
    classes = recipe.get("classes")
    assert bank_label(meta).endswith(f"-{recipe['epochs']}ep" + (f"-c{''.join(map(str, classes))}" if classes else ""))
    if name.endswith("_c04"):       # class-disjoint: source models never saw classes 5-9
        assert json.loads(meta["classes"]) == classes == [0, 1, 2, 3, 4]


def test_default_bank_is_the_converged_one():
    assert DEFAULT_BANK == PACKAGED[DEFAULT_BANK_NAME] == bank_file("dwpnet_e24")
    bank = KernelBank.load(DEFAULT_BANK)
    meta = bank.meta
    assert all(a >= 0.80 for a in json.loads(meta["source_test_acc"]).values())   # the recipe's target
    times = json.loads(meta["source_train_time_s"])
    assert sorted(map(int, times)) == [0, 1, 2, 3, 4] and all(t > 0 for t in times.values())
    assert bank.kernel_size("conv1") == 7 and bank.kernel_size("conv2") == 5 and bank.filter_rows("conv1") == 3
    old = KernelBank.load(bank_file("dwpnet_e4"))        # the first bank, kept under its own name
    assert json.loads(old.meta["recipe"])["epochs"] == 4 and old.layers.keys() == bank.layers.keys()
    merged = json.loads(packaged_bank().meta["merged"])
    assert [json.loads(m["recipe"])["epochs"] for m in merged] == [24, 15]        # default + ResNet-20
    assert {packaged_bank().kernel_size(n) for n in packaged_bank().layers} == {3, 5, 7}


def test_a_path_is_not_mistaken_for_a_packaged_name(tmp_path):
    assert bank_file(tmp_path / "x.safetensors") == tmp_path / "x.safetensors"
    assert bank_file("dwpnet_e4").is_file() and bank_file("dwpnet_e4").parent.name == "assets"


def test_packaged_sources_match_their_bank():
    """The shipped ResNet-20 source networks (for --init chain / finetune) are the models the
    class-disjoint bank was collected from: same seeds, same classes, same conv weights."""
    from fastreg.chain import load_sources, sources_file, sources_from_bank
    from fastreg.models import build_model
    models, meta = load_sources(sources_file("resnet20_c04"))
    bank = KernelBank.load(bank_file("resnet20_c04"))
    assert meta["seeds"] == json.loads(bank.meta["seeds"]) == [0, 1, 2, 3, 4]
    assert meta["classes"] == json.loads(bank.meta["classes"]) == [0, 1, 2, 3, 4]
    keys = set(build_model("resnet20", 5).state_dict())
    from_bank = sources_from_bank(bank)
    for sd, convs in zip(models, from_bank, strict=True):
        assert set(sd) == keys                              # whole networks: shortcuts, norms, head
        assert sd["layer2.0.shortcut.0.weight"].shape == (32, 16, 1, 1)    # the 1×1 projections
        for k, w in convs.items():
            assert torch.allclose(sd[k], w, rtol=1e-3, atol=1e-4), k    # fp16 rounding only
