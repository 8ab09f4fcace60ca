"""The Deep Weight Prior CIFAR classifier (stable layer names: banks refer to them)."""
from __future__ import annotations

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


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """Named conv layers, in order (``conv1``, ``conv2``, …)."""
    return {n: m for n, m in model.named_children() if isinstance(m, nn.Conv2d)}
