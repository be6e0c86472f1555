"""Report 001's cascade: one network tells normal from infected, a second one tells the infected
classes apart (covid vs other infected for three classes), combined into one prediction."""
from __future__ import annotations

import torch
from torch import nn


class Cascade(nn.Module):
    """Outputs ``log p(class)`` with ``p(normal) = p1(normal)`` and ``p(c) = p1(infected) * p2(c)``
    for every other class ``c``: softmax of the output gives the combined probabilities, and cross
    entropy on it is stage 1's binary loss plus stage 2's loss on the infected samples only (the
    two networks share no parameters, so each learns its own binary task)."""

    def __init__(self, stage1: nn.Module, stage2: nn.Module, normal: int, num_classes: int) -> None:
        super().__init__()
        self.stage1, self.stage2 = stage1, stage2
        stacked = [normal, *(c for c in range(num_classes) if c != normal)]  # column -> class
        self.register_buffer("order", torch.argsort(torch.tensor(stacked)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = torch.log_softmax(self.stage1(x).float(), 1)
        s2 = torch.log_softmax(self.stage2(x).float(), 1)
        return torch.cat([s1[:, :1], s1[:, 1:] + s2], 1)[:, self.order]

