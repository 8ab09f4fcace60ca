"""The README's example runs as written, so it cannot rot: it is extracted from README.md,
given a user's model and loader, and must train both the model and the discriminator."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from fastreg.layers import conv_layers

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The first ```python block under '## Use it in your own training loop'."""
    section = README.read_text().split("## Use it in your own training loop", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


class UserCNN(nn.Module):
    """A model fastreg has never seen: 7×7 conv1, then a head of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 7)
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv1(x))


def test_readme_example_is_short():
    assert len(readme_example().strip().splitlines()) <= 15


def _run_example(model: nn.Module, steps: int = 3) -> dict:
    g = torch.Generator().manual_seed(1)
    loader = [(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g))
              for _ in range(steps)]
    ns = {"model": model, "loader": loader}
    exec(compile(readme_example(), str(README), "exec"), ns)
    return ns


def _check_trained(ns: dict, layers: list[str], steps: int = 3) -> None:
    reg = ns["reg"]
    assert sorted(reg.layers) == sorted(layers) and int(reg.step) == steps   # one D update per batch
    assert torch.isfinite(ns["loss"]) and torch.isfinite(reg.generator_loss())
    for name in layers:
        for p in reg.discs[name.replace(".", "__")].parameters():   # every D's optimizer stepped
            assert int(reg.opt.state[p]["step"]) == steps


def test_readme_example_runs():
    torch.manual_seed(0)
    model = UserCNN()
    w0 = model.conv1.weight.detach().clone()
    ns = _run_example(model)
    _check_trained(ns, ["conv1"])
    assert not torch.equal(model.conv1.weight, w0)


def test_readme_example_on_a_torchvision_resnet18():
    """Every conv of 3x3 or more of a torchvision ResNet-18 (the 7x7 stem and sixteen 3x3
    convs; the 1x1 shortcuts are left out) starts from bank filters and is regularized."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] >= 3]
    assert len(convs) == 17
    fresh = {n: m.weight.detach().clone() for n, m in model.named_modules() if n in convs}
    ns = _run_example(model)
    _check_trained(ns, convs)
    for name in convs:       # replaced by bank draws (3 AdamW steps of 1e-3 move a weight <= 3e-3)
        w, w0 = dict(model.named_modules())[name].weight.detach(), fresh[name]
        assert (w - w0).norm() / w0.norm() > 0.5, name
        assert abs(float(w.std() / w0.std()) - 1) < 0.1, name           # at the layer's own scale


# ---------------------------------------------------------- models fastreg has never seen
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


torchvision = pytest.importorskip("torchvision")
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


def readme_chain_example() -> str:
    """The ```python block under '## What helps, measured': chain init for a whole network."""
    section = README.read_text().split("## What helps, measured", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_chain_example_copies_one_source_network():
    """As written, on the ResNet-20 the packaged sources come from: every conv (the 1×1
    shortcut projections included) is source 0's, and the L2-SP term is 0 at the start and grows as the weights leave it."""
    from fastreg import load_sources
    from fastreg.models import build_model
    torch.manual_seed(0)
    model = build_model("resnet20", 5)
    deeper = build_model("resnet32", 5, width=2.0)
    ns = {"model": model, "deeper": deeper}
    exec(compile(readme_chain_example(), str(README), "exec"), ns)
    assert ns["started"].modules["layer1.4.conv1"] == "new: identity"
    assert torch.equal(deeper.conv1.weight[:16].detach(), load_sources("resnet20_c04")[0][0]["conv1.weight"].float())
    src = load_sources("resnet20_c04")[0][0]
    convs = conv_layers(model)
    assert sorted(ns["copied"]["convs"]) == sorted(convs) and any("shortcut" in n for n in convs)
    for name in ns["copied"]["convs"]:
        assert torch.equal(convs[name].weight.detach(), src[name + ".weight"].float()), name
    assert ns["l2sp"].generator_loss().item() == 0.0
    with torch.no_grad():
        convs["conv1"].weight.add_(0.1)
    expect = 0.5 * 0.01 * 0.01 * convs["conv1"].weight.numel()
    assert abs(ns["l2sp"].generator_loss().item() - expect) < 1e-6 * max(expect, 1)


# ------------------------------------------- torchvision families, pasted verbatim
SERVED = (3, 5, 7)    # the packaged bank's kernel sizes
FAMILIES = {          # (constructor, convs of 3x3 or more the packaged bank has no kernels for)
    "convnext_tiny": ("convnext_tiny", ["features.0.0"]),         # 4x4 patchify stem
    "efficientnet_b0": ("efficientnet_b0", []),
    "regnet_x_400mf": ("regnet_x_400mf", []),
    "shufflenet_v2": ("shufflenet_v2_x1_0", []),
    "densenet121": ("densenet121", []),
    "vgg11_bn": ("vgg11_bn", []),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_readme_example_on_torchvision_families(name, capsys):
    """The README snippet as written on six torchvision families: every conv the bank has
    kernels of its size for starts from bank draws and is regularized; a conv of a size it
    lacks (ConvNeXt's 4x4 stem) is left exactly as it was, said in one line per call."""
    torchvision = pytest.importorskip("torchvision")
    ctor, lacking = FAMILIES[name]
    torch.manual_seed(0)
    model = getattr(torchvision.models, ctor)(num_classes=10)
    convs = conv_layers(model)
    spatial = [n for n, c in convs.items() if c.kernel_size[0] == c.kernel_size[1] >= 3]
    served = [n for n in spatial if convs[n].kernel_size[0] in SERVED]
    assert sorted(set(spatial) - set(served)) == lacking and served
    fresh = {n: convs[n].weight.detach().clone() for n in spatial}
    opt_lr = 1e-3
    ns = _run_example(model, steps=2)
    _check_trained(ns, served, steps=2)
    for n in served[:3] + served[-2:]:
        w, w0 = convs[n].weight.detach(), fresh[n]
        assert (w - w0).norm() / w0.norm() > 0.5, n                  # replaced by bank draws
    for n in lacking:                                                 # two AdamW steps only
        assert (convs[n].weight.detach() - fresh[n]).abs().max() <= 2 * opt_lr * 1.01, n
    err = capsys.readouterr().err
    left_lines = [ln for ln in err.splitlines() if "alone" in ln]
    if lacking:
        assert len(left_lines) == 2     # one line from init_from_bank, one from the regularizer
        assert all(", ".join(f"{n} (4x4)" for n in lacking) in ln and "3x3, 5x5, 7x7" in ln for ln in left_lines)
    else:
        assert not left_lines


def test_a_layer_named_exactly_that_no_bank_layer_serves_is_refused_in_one_short_line():
    torchvision = pytest.importorskip("torchvision")
    from fastreg import AdversarialRegularizer, init_from_bank, packaged_bank
    from fastreg.errors import BankError
    model = torchvision.models.convnext_tiny(num_classes=10)
    bank = packaged_bank()
    w0 = model.features[0][0].weight.detach().clone()
    for call in (lambda: init_from_bank(model, bank, "features.0.0"),
                 lambda: init_from_bank(model, bank, ["features.0.0"]),
                 lambda: AdversarialRegularizer(model, bank, "features.0.0,features.1.0.block.0")):
        with pytest.raises(BankError) as e:
            call()
        msg = str(e.value)
        assert msg == "bank has no 4x4 kernels for layer 'features.0.0' (it has 3x3, 5x5, 7x7)", msg
    assert torch.equal(model.features[0][0].weight, w0)
