"""The seed article's network as a PyTorch module (see ../make_models.py for the Keras original).

A 284x284x3 input, four 3x3 convolutions with 32, 64, N and 32 filters (no padding; the last
three with stride 2; ReLU), then flatten and a 10-way linear layer with softmax.  N is 90 or 96.
"""

from __future__ import annotations

import torch
from torch import nn


class SeedNet(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2)
        self.conv3 = nn.Conv2d(64, channels, 3, stride=2)
        self.conv4 = nn.Conv2d(channels, 32, 3, stride=2)
        self.fc = nn.Linear(32 * 34 * 34, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        x = torch.relu(self.conv4(x))
        return torch.softmax(self.fc(torch.flatten(x, 1)), dim=1)


def network(channels: int) -> SeedNet:
    torch.manual_seed(channels)  # fixed weights: the same program, so the same estimate, every run
    return SeedNet(channels).eval()


def example_inputs() -> tuple[torch.Tensor]:
    return (torch.rand(1, 3, 284, 284, generator=torch.Generator().manual_seed(0)),)


def calibration(count: int = 8) -> list[tuple[torch.Tensor]]:
    """Random images, as the TFLite flow's representative data set (make_models.py)."""
    generator = torch.Generator().manual_seed(1)
    return [(torch.rand(1, 3, 284, 284, generator=generator),) for _ in range(count)]
