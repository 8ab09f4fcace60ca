"""A source network of one depth and width starts a target of another (fastreg.transfer,
DESIGN.md §14): deeper and wider targets compute the source's features before any training,
the map on shallower, deeper, narrower, wider and unevenly wider targets, another family, and
every mismatch refused in one line with the model left as it was."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastreg import KernelBank
from fastreg.chain import chain_init, finetune_init
from fastreg.errors import UsageError
from fastreg.lab import train
from fastreg.lab.cli import run_main
from fastreg.models import build_model
from fastreg.transfer import fit, stages, transfer_init
from helpers import make_npz_data, smooth_kernels


def _source(width: float = 1.0, seed: int = 0) -> dict[str, torch.Tensor]:
    """A ResNet-20 state_dict with norms that are not at their init (else identity-like
    statistics would hide a wrong map)."""
    torch.manual_seed(seed)
    sd = build_model("resnet20", 5, width).state_dict()
    g = torch.Generator().manual_seed(seed + 1)
    for k, v in sd.items():
        if v.is_floating_point() and "running_var" in k:
            v.copy_(torch.rand(v.shape, generator=g) + 0.5)
        elif v.is_floating_point() and v.dim() == 1:
            v.copy_(torch.randn(v.shape, generator=g) * 0.5)
    return sd


def _features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = F.relu(m.bn1(m.conv1(x)))
    return F.adaptive_avg_pool2d(m.layer3(m.layer2(m.layer1(x))), 1).flatten(1)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("arch,width", [("resnet32", 1.0), ("resnet56", 1.0), ("resnet20", 2.0),
                                        ("resnet20", 1.5), ("resnet32", 2.0)])
def test_deeper_and_wider_targets_compute_the_source_features(arch, width, mode):
    """Net2Deeper (identity blocks) exactly, Net2Wider (channel j = source channel j mod C,
    replicated inputs sharing their weight) to float rounding, uneven replication (x1.5) too."""
    sd = _source()
    src = build_model("resnet20", 5)
    src.load_state_dict(sd)
    torch.manual_seed(3)
    tgt = build_model(arch, 5, width)
    transfer_init(tgt, [sd], quiet=True)
    getattr(src, mode)(), getattr(tgt, mode)()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        a, b = _features(src, x), _features(tgt, x)
    idx = torch.arange(b.shape[1]) % a.shape[1]
    assert b.shape[1] == round(64 * width)
    tol = 0.0 if width == 1.0 else 1e-5 * float(a.abs().max())
    assert float((b - a[:, idx]).abs().max()) <= tol


def test_the_map_on_shallower_deeper_narrower_and_wider_targets(capsys):
    sd = _source()
    m8 = transfer_init(build_model("resnet8", 5), [sd])
    assert [m8.modules[f"layer{s}.0.conv1"] for s in (1, 2, 3)] == [f"layer{s}.0.conv1" for s in (1, 2, 3)]
    assert m8.modules["fc"] == "new: head" and "layer2.0 ← layer2.0" in capsys.readouterr().err
    m56 = transfer_init(build_model("resnet56", 5), [sd], quiet=True)
    new = sorted({m56.block_of(k) for k, v in m56.modules.items() if v == "new: identity"},
                 key=lambda b: (b[:6], int(b[7:])))
    assert new == [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3, 9)]
    assert m56.modules["layer3.2.bn2"] == "layer3.2.bn2" and "layer3.5.conv1" not in m56.copied
    tgt = build_model("resnet56", 5)
    transfer_init(tgt, [sd], quiet=True)
    assert tgt.layer2[7].bn2.weight.abs().sum().item() == 0 and tgt.layer2[2].bn2.weight.abs().sum().item() > 0
    narrow = build_model("resnet20", 5, 0.5)
    got = transfer_init(narrow, [sd], quiet=True)
    assert len(got.copied) == len([k for k, v in got.modules.items() if v != "new: head"])
    assert torch.equal(narrow.layer3[0].conv1.weight.detach(),                  # evenly spaced channels
                       sd["layer3.0.conv1.weight"][torch.arange(32) * 2][:, torch.arange(16) * 2])
    convs_only = build_model("resnet32", 5, 2.0)
    bn0 = convs_only.bn1.weight.detach().clone()
    got = transfer_init(convs_only, [sd], norms=False, quiet=True)
    assert got.modules["bn1"] == "new: own init" and torch.equal(convs_only.bn1.weight.detach(), bn0)


def test_fit_replicates_and_divides_over_replicated_inputs():
    src = torch.arange(2 * 4, dtype=torch.float32).reshape(2, 4)
    out = fit(src, torch.empty(3, 6), weight=True)        # out: 0,1,0 ; in: 0,1,2,3,0,1 (0 and 1 twice)
    assert torch.equal(out[:, 4:] * 2, src[[0, 1, 0]][:, :2]) and torch.equal(out[:, 2:4], src[[0, 1, 0]][:, 2:4])
    assert torch.equal(fit(src, torch.empty(2, 2), weight=True), src[:, [0, 2]])   # narrower: selected


def test_shallower_selection_first_or_spaced():
    import torchvision
    r34 = torchvision.models.resnet34(num_classes=10).state_dict()
    for blocks, want in (("first", "layer3.1"), ("spaced", "layer3.5")):
        got = transfer_init(torchvision.models.resnet18(num_classes=10), [r34], blocks=blocks, quiet=True)
        assert got.modules["layer3.1.conv1"] == want + ".conv1", blocks
    assert stages(torchvision.models.resnet18()) == ["layer1", "layer2", "layer3", "layer4"]
    r18 = torchvision.models.resnet18(num_classes=10)
    r34 = torchvision.models.resnet34(num_classes=10)
    transfer_init(r34, [r18.state_dict()], quiet=True)                 # deeper: identity blocks, exactly
    r18.eval(), r34.eval()
    x = torch.randn(2, 3, 64, 64)
    body = lambda m: nn.Sequential(*list(m.children())[:-1])            # noqa: E731  (all but the head)
    with torch.no_grad():
        assert torch.equal(body(r18)(x), body(r34)(x))


def test_mismatches_are_refused_in_one_line_and_the_model_is_left_as_it_was():
    import torchvision
    tgt = torchvision.models.resnet18(num_classes=10)
    before = {k: v.clone() for k, v in tgt.state_dict().items()}
    with pytest.raises(UsageError, match=r"layer1.0.conv1 has 3x3 kernels here and 1x1 in the source"):
        transfer_init(tgt, [torchvision.models.resnet50(num_classes=10).state_dict()])
    with pytest.raises(UsageError, match=r"conv1 has 7x7 kernels here and 3x3"):
        transfer_init(tgt, [_source()])
    with pytest.raises(UsageError, match="holds no conv weights"):
        transfer_init(tgt, [{"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}])
    assert all(torch.equal(before[k], v) for k, v in tgt.state_dict().items())
    # chain init and fine-tuning copy by name: another depth or kernel size is refused, not cut
    with pytest.raises(UsageError, match="3 blocks in layer1, this model 2: another depth"):
        chain_init(tgt, [torchvision.models.resnet34(num_classes=10).state_dict()], "all")
    assert all(torch.equal(before[k], v) for k, v in tgt.state_dict().items())
    cifar = build_model("resnet18", 10)                  # the CIFAR stem: a 3x3 conv1 where torchvision has 7x7
    with pytest.raises(UsageError, match="conv1.weight has 3x3 kernels here and 7x7 in the source"):
        finetune_init(cifar, [torchvision.models.resnet18(num_classes=10).state_dict()])


def test_another_family_starts_from_the_bank_statistics_or_is_refused():
    vgg = build_model("vgg11", 5, 0.25)
    before = {k: v.clone() for k, v in vgg.state_dict().items()}
    with pytest.raises(UsageError, match=r"no layer that corresponds to this model's \(first: features.0\)"):
        transfer_init(vgg, [_source()])
    assert all(torch.equal(before[k], v) for k, v in vgg.state_dict().items())
    bank = KernelBank({"k3": smooth_kernels(400, 3)})
    got = transfer_init(vgg, [_source()], bank=bank, quiet=True)
    convs = [n for n, m in vgg.named_modules() if isinstance(m, nn.Conv2d)]
    assert all(got.modules[n] == "new: bank statistics" for n in convs) and got.copied == []
    for n in convs:      # drawn at the layer's own init scale
        w, w0 = dict(vgg.named_modules())[n].weight.detach(), before[n + ".weight"]
        assert not torch.equal(w, w0) and abs(float(w.std() / w0.std()) - 1) < 0.05


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_npz_data(tmp_path_factory.mktemp("data"), per_class_train=30, per_class_test=4)


def test_train_init_transfer_records_its_map_and_refuses_bad_sources(data, tmp_path, capsys):
    from fastreg.chain import save_sources
    src = tmp_path / "src.safetensors"
    save_sources({"seed0": _source()}, src, {"architecture": "resnet20"})
    base = ["--data-root", str(data), "--classes", "5,6,7,8,9", "--train-size", "10", "--epochs", "1",
            "--eval-size", "10", "--batch-size", "10", "--lambda", "0", "--bank", "none"]
    out = tmp_path / "r"
    assert run_main(train.main, [*base, "--arch", "resnet32", "--init", "transfer", "--chain-norms",
                                 "--sources", str(src), "--out", str(out)]) == 0
    assert "layer1.4 ← new: identity" in capsys.readouterr().err
    recorded = json.loads((out / "init_map.json").read_text())
    assert recorded["modules"]["layer1.4.conv1"] == "new: identity" and recorded["modules"]["bn1"] == "bn1"
    head_only = tmp_path / "head.safetensors"
    save_sources({"seed0": {"fc.weight": torch.zeros(5, 64), "fc.bias": torch.zeros(5)}}, head_only, {})
    for sources, msg in ((str(head_only), "holds no conv weights"), (str(src), "7x7 kernels here and 3x3")):
        arch = ["--arch", "resnet32"] if "head" in sources else []
        rc = run_main(train.main, [*base, *arch, "--init", "transfer", "--sources", sources,
                                   "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and err.count("\n") == 1 and err.startswith("error: --sources: transfer")
        assert not (tmp_path / "bad").exists()


def test_a_wider_dwpnet_computes_the_narrower_ones_features():
    """Modules outside any stage are matched by name; fc1 (a linear over conv4's channels) is
    widened like a conv, the head fc2 is new."""
    torch.manual_seed(0)
    src = build_model("dwpnet", 5, 0.125)
    with torch.no_grad():
        for m in src.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2), m.bias.normal_(0, 0.5)
    tgt = build_model("dwpnet", 5, 0.25)
    got = transfer_init(tgt, [src.state_dict()], quiet=True)
    assert got.modules["fc1"] == "fc1" and got.modules["fc2"] == "new: head"

    def fc1(m, x):
        for i, name in enumerate(("conv1", "conv2", "conv3", "conv4"), 1):
            x = F.leaky_relu(getattr(m, f"bn{i}")(getattr(m, name)(x)), 0.1)
            x = F.max_pool2d(x, 2) if i == 1 else x
        return F.leaky_relu(m.fc1(x.flatten(1)), 0.1)

    src.eval(), tgt.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        a, b = fc1(src, x), fc1(tgt, x)
    assert float((b - a[:, torch.arange(b.shape[1]) % a.shape[1]]).abs().max()) <= 1e-5 * float(a.abs().max())


def test_a_deeper_convnext_starts_as_the_shallower_one_linears_and_layer_scales_included():
    """ConvNeXt's blocks hold Linear layers and a layer scale of their own: both are mapped, and
    a new block starts as an identity through its layer scale (0), exactly (eval mode: stochastic
    depth off)."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    tiny = torchvision.models.convnext_tiny(num_classes=10)
    with torch.no_grad():
        for name, p in tiny.named_parameters():
            if name.endswith("layer_scale"):
                p.normal_(0, 0.3)
    small = torchvision.models.convnext_small(num_classes=10)
    got = transfer_init(small, [tiny.state_dict()], quiet=True)
    assert got.modules["features.5.3.block.3"] == "features.5.3.block.3"            # a Linear in a block
    assert got.modules["features.5.20"] == "new: identity" and got.modules["features.6.1"] == "features.6.1"
    tiny.eval(), small.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(tiny.avgpool(tiny.features(x)), small.avgpool(small.features(x)))


class _Plain(nn.Module):
    """conv → BN → ReLU, no residual connection: a new one cannot start as an identity."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class _Toy(nn.Module):
    def __init__(self, c: int = 8, blocks: int = 2, cin: int = 3, norm: str = "bn", head: bool = True) -> None:
        super().__init__()
        self.stem = nn.Conv2d(cin, c, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(c) if norm == "bn" else nn.GroupNorm(2, c)
        self.layer1 = nn.Sequential(*[_Plain(c) for _ in range(blocks)])
        self.fc = nn.Linear(c, 5) if head else nn.Identity()


def test_a_new_block_without_a_residual_connection_is_refused():
    tgt = _Toy(blocks=3)
    before = {k: v.clone() for k, v in tgt.state_dict().items()}
    with pytest.raises(UsageError, match="new block layer1.2 does not pass its input through"):
        transfer_init(tgt, [_Toy(blocks=2).state_dict()], quiet=True)
    assert all(torch.equal(before[k], v) for k, v in tgt.state_dict().items())


def test_a_new_identity_block_zeroes_its_last_norm_bias_too():
    """A target whose norms are not at their init (trained, or a custom init) still starts as
    the source: the new blocks' residual branches are 0, bias included."""
    sd = _source()
    src = build_model("resnet20", 5)
    src.load_state_dict(sd)
    tgt = build_model("resnet32", 5)
    with torch.no_grad():
        for m in tgt.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.normal_(0, 0.5)
    transfer_init(tgt, [sd], quiet=True)
    src.eval(), tgt.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(_features(src, x), _features(tgt, x))


def test_shapes_that_are_not_channel_counts_are_refused():
    # another family sharing names: torchvision's ResNet-18 (CIFAR stem) from ResNet-20 sources
    with pytest.raises(UsageError, match=r"layer2.0.downsample.0 has no counterpart layer2.0.downsample.0"):
        transfer_init(build_model("resnet18", 10), [_source()], quiet=True)
    with pytest.raises(UsageError, match="no Linear layer to take as its new head"):
        transfer_init(_Toy(head=False), [_Toy(head=False).state_dict()], quiet=True)
    with pytest.raises(UsageError, match="stem takes 1 input channels here and 3 in the source"):
        transfer_init(_Toy(cin=1), [_Toy(cin=3).state_dict()], quiet=True)
    src = _Toy().state_dict()
    src["stem.bias"] = torch.zeros(8)                    # a source bias the target has no place for
    with pytest.raises(UsageError, match="the source's stem.bias has no counterpart in stem"):
        transfer_init(_Toy(), [src], quiet=True)

    class Flat(nn.Module):                               # a classifier over flattened C·4·4 maps
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, c, 3, bias=False)
            self.fc1, self.fc2 = nn.Linear(c * 16, 32), nn.Linear(32, 5)
    with pytest.raises(UsageError, match="fc1 takes 256 inputs here and 128 in the source, not the channels"):
        transfer_init(Flat(16), [Flat(8).state_dict()], quiet=True)


def test_a_group_norm_over_replicated_channels_is_said_to_be_approximate(capsys):
    got = transfer_init(_Toy(16, norm="gn"), [_Toy(8, norm="gn").state_dict()])
    assert got.approximate == ["norm"] and got.as_dict()["approximate"] == ["norm"]
    assert "1 group/layer norms over replicated channels (e.g. norm)" in capsys.readouterr().err
    assert transfer_init(_Toy(16), [_Toy(8).state_dict()], quiet=True).approximate == []   # batch norm: exact


@pytest.mark.cuda
def test_transfer_onto_a_model_on_cuda_gives_the_cpu_start():
    """Sources on the CPU, the target on the GPU: the same state, on the target's device."""
    sd = _source()
    torch.manual_seed(3)
    cpu = build_model("resnet32", 5, 1.5)
    gpu = build_model("resnet32", 5, 1.5).cuda()
    gpu.load_state_dict(cpu.state_dict())
    transfer_init(cpu, [sd], quiet=True)
    transfer_init(gpu, [sd], quiet=True)
    for k, v in gpu.state_dict().items():
        assert v.is_cuda and torch.equal(v.cpu(), cpu.state_dict()[k]), k
