"""Classifiers: the Deep Weight Prior CIFAR net (stable layer names: banks refer to them),
CIFAR ResNets, and a builder by name (``build_model``)."""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

# (name, out_channels at width 1, kernel size); input 32 → 26 → pool 13 → 9 → 5 → 1
CONV_PLAN = (("conv1", 128, 7), ("conv2", 256, 5), ("conv3", 256, 5), ("conv4", 512, 5))
FC_WIDTH = 512


def channels(c: int, width: float) -> int:
    """Channel count of a layer with ``c`` channels at width 1, scaled by ``width``."""
    return max(1, int(round(c * width)))


class DWPNet(nn.Module):
    """Unpadded conv 7×7 → 2×2 max-pool → three unpadded conv 5×5 → FC → FC.

    Each conv is followed by BatchNorm + LeakyReLU; ``width`` scales every channel count.
    """

    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 3,
                 slope: float = 0.1) -> None:
        super().__init__()
        self.width, self.num_classes, self.slope = float(width), int(num_classes), float(slope)
        c_in = in_channels
        for i, (name, c, k) in enumerate(CONV_PLAN, start=1):
            c_out = channels(c, width)
            setattr(self, name, nn.Conv2d(c_in, c_out, k, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(c_out))
            c_in = c_out
        self.fc1 = nn.Linear(c_in, channels(FC_WIDTH, width))
        self.fc2 = nn.Linear(channels(FC_WIDTH, width), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (name, _, _) in enumerate(CONV_PLAN, start=1):
            x = F.leaky_relu(getattr(self, f"bn{i}")(getattr(self, name)(x)), self.slope)
            if i == 1:
                x = F.max_pool2d(x, 2)
        x = F.leaky_relu(self.fc1(x.flatten(1)), self.slope)
        return self.fc2(x)


class BasicBlock(nn.Module):
    """Two 3×3 convs with BatchNorm and ReLU, plus the identity (or a 1×1 projection)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. (2016): a 3×3 stem and three stages of ``blocks`` basic
    blocks at 16/32/64 channels (× ``width``); ``blocks=3`` is ResNet-20. All kernels 3×3
    (projections 1×1)."""

    def __init__(self, num_classes: int = 10, blocks: int = 3, width: float = 1.0) -> None:
        super().__init__()
        self.width, self.num_classes = float(width), int(num_classes)
        cs = [channels(c, width) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(3, cs[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cs[0])
        c_in, stages = cs[0], []
        for i, c in enumerate(cs):
            stages.append(nn.Sequential(*[BasicBlock(c_in if b == 0 else c, c, 2 if i and b == 0 else 1)
                                          for b in range(blocks)]))
            c_in = c
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class FConvMNIST(nn.Module):
    """The Deep Weight Prior's MNIST network (its code's ``FConvMNIST``, ``--hid_dim 32 128``):
    conv 7×7 1→32, LeakyReLU, 2×2 max-pool, conv 5×5 32→128, LeakyReLU, 2×2 max-pool, a
    linear head over the 128·3·3 features; unpadded convs with biases, for 28×28 digits.
    ``width`` scales both convs."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 1) -> None:
        super().__init__()
        c1, c2 = channels(32, width), channels(128, width)
        self.conv1 = nn.Conv2d(in_channels, c1, 7)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.fc = nn.Linear(c2 * 9, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.leaky_relu(self.conv1(x), 0.01), 2)
        x = F.max_pool2d(F.leaky_relu(self.conv2(x), 0.01), 2)
        return self.fc(x.flatten(1))


class CifarVGG(nn.Module):
    """VGG-11 for 32x32 images (Simonyan & Zisserman 2015, configuration A): eight 3×3 convs
    with BatchNorm and ReLU, five 2×2 max-pools, a linear head; ``width`` scales every channel
    count. A family without residual blocks (``fastreg.transfer``: another family)."""
    PLAN = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in self.PLAN:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            c = channels(int(v), width)
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


def resnet18_cifar(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 with the usual CIFAR stem: 3×3 stride-1 conv1, no max-pool."""
    import torchvision
    m = torchvision.models.resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


ARCHS = ("dwpnet", "resnet20", "resnetN", "resnet18", "vgg11", "fconv", "timm:NAME")
WIDTHS = "dwpnet, resnetN, vgg11 and fconv"    # the archs whose channel counts ``width`` scales
GRAYSCALE = ("fconv",)                          # the archs for 1-channel 28x28 digits (MNIST)


def resnet_blocks(arch: str) -> int | None:
    """Blocks per stage of a CIFAR ResNet named by its depth, ``resnet{6n+2}`` (``resnet8``,
    ``resnet20``, ``resnet56``): ``n``; None for another name (``resnet18`` is torchvision's)."""
    m = re.fullmatch(r"resnet(\d+)", arch)
    if not m or arch == "resnet18" or int(m.group(1)) < 8 or (int(m.group(1)) - 2) % 6:
        return None
    return (int(m.group(1)) - 2) // 6


def input_channels(architecture: str, layer: str) -> int | None:
    """The input channels of ``layer`` in the model an ``architecture`` string names, as banks
    record it (``DWPNet(width=0.5)``), from the layer plan (no model is built: that would draw
    from torch's RNG); None when the string or the layer is not one this module knows."""
    import re
    arch = re.fullmatch(r"DWPNet\(width=([0-9.eE+-]+)\)", architecture or "")
    names = [n for n, _, _ in CONV_PLAN]
    if not arch or layer not in names:
        return None
    i = names.index(layer)
    return 3 if i == 0 else channels(CONV_PLAN[i - 1][1], float(arch.group(1)))


def build_model(arch: str, num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """A classifier by name: ``dwpnet`` (default), ``resnet{6n+2}`` (the CIFAR ResNets:
    ``resnet8``, ``resnet20``, ``resnet32``, ``resnet56``, …), ``resnet18`` (torchvision's, CIFAR
    stem), ``vgg11`` (CIFAR VGG-11), ``fconv`` (the Deep Weight Prior's MNIST network, 1×28×28
    digits) or ``timm:NAME`` (needs timm). ``width`` scales every channel count of dwpnet, the
    CIFAR ResNets, vgg11 and fconv."""
    from .errors import UsageError
    known = arch in ("dwpnet", "resnet18", "vgg11", "fconv") or resnet_blocks(arch) is not None \
        or arch.startswith("timm:")
    if not known:
        raise UsageError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)} (N = 6n+2: 8, 14, 20, 32, 56, …)",
                         "arch")
    if arch in ("resnet18",) or arch.startswith("timm:"):
        if width != 1.0:
            raise UsageError(f"width applies to {WIDTHS}, not to {arch}", "width")
    if arch == "dwpnet":
        return DWPNet(num_classes, width)
    if resnet_blocks(arch) is not None:
        return CifarResNet(num_classes, resnet_blocks(arch), width)
    if arch == "vgg11":
        return CifarVGG(num_classes, width)
    if arch == "fconv":
        return FConvMNIST(num_classes, width)
    if arch == "resnet18":
        return resnet18_cifar(num_classes)
    try:
        import timm
    except ImportError:
        raise UsageError(f"arch {arch} needs timm (pip install timm)", "arch") from None
    try:
        return timm.create_model(arch[5:], pretrained=False, num_classes=num_classes)
    except RuntimeError as e:
        raise UsageError(f"arch {arch}: {str(e).splitlines()[0][:200]}", "arch") from None
