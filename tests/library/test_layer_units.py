"""Which unit each layer of any model draws from a bank (KernelBank.plan): depthwise filters
are bank kernels, grouped ones bank filters of their group's input count or else slices, with
the model's layer named; and λ and the prior weight as a mean over layers (DESIGN.md §4, §9)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fastreg import AdversarialRegularizer, KernelBank, init_from_bank, packaged_bank
from fastreg.errors import BankError, UsageError
from fastreg.layers import conv_layers, select_layers
from fastreg.prior import GaussianPrior
from helpers import smooth_kernels
from test_readme import MODELS, Custom, _spatial


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
    with pytest.raises(BankError, match=r"no 11x11 kernels for layer '1' \(it has 3x3\)"):
        init_from_bank(model, bank, "1")
    w = model[1].weight.detach().clone()
    assert init_from_bank(model, bank, "all") == {"0": "slice"}     # a pattern leaves the 11x11 conv alone
    assert torch.equal(model[1].weight, w)
    with pytest.raises(UsageError, match=r"no conv layer with square kernels of 3x3 or more, only 0 \(1x1\)"):
        select_layers(nn.Sequential(nn.Conv2d(3, 8, 1)), "all")
    with pytest.raises(UsageError, match="no nn.Conv2d layer"):
        select_layers(nn.Sequential(nn.Linear(3, 8)), "all")



def test_only_rank_0_writes_the_layer_note(monkeypatch, capsys):
    """Under torchrun every rank selects the same layers; one line is enough, from rank 0."""
    import torch.distributed as dist
    bank = KernelBank({"k3": smooth_kernels(100, 3)})
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 11))
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    for rank, says in ((0, True), (1, False)):
        monkeypatch.setattr(dist, "get_rank", lambda rank=rank: rank)
        assert select_layers(model, "all", sizes=bank.kernel_sizes()) == ["0"]
        assert ("leaves 1 conv alone" in capsys.readouterr().err) is says

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
