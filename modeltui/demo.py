"""The bundled demo model: ``modeltui`` with no TARGET opens it.

It shows every feature at once: nesting, a tied embedding/output pair, a
module used twice, BatchNorm buffers, a constant tensor, a frozen layer, a
lazy layer and data-dependent control flow. Input: ``2,12:int64``.
"""

import torch
from torch import nn


class Scaler(nn.Module):
    """A custom layer with a constant tensor (not in state_dict)."""

    def __init__(self, d: int):
        super().__init__()
        self.scale = torch.linspace(0.5, 1.5, d)  # constant: a plain attribute
        self.gain = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * self.scale * self.gain


class Encoder(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.shared = nn.Linear(d, d)
        self.norm = nn.BatchNorm1d(d)
        self.blocks = nn.Sequential(self.shared, nn.GELU(), Scaler(d), self.shared, nn.Tanh())

    def forward(self, x):
        b, t, d = x.shape
        x = self.norm(x.reshape(b * t, d)).reshape(b, t, d)
        return self.blocks(x)


class DemoNet(nn.Module):
    """A small language model with everything modeltui can show."""

    def __init__(self, vocab: int = 100, d: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.encoder = Encoder(d)
        self.frozen = nn.Linear(d, d)
        self.frozen.requires_grad_(False)
        self.probe = nn.LazyLinear(4)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def forward(self, idx):
        x = self.encoder(self.embed(idx))
        x = x + self.frozen(x)
        while x.abs().max() > 10:  # data-dependent control flow
            x = x / 2
        _ = self.probe(x)
        return self.head(x)
