"""Custom initialisers that do what the session must undo exactly (issue 11 item 5).

Used by ``test_undo_truth.py`` by import path (``bad_inits:replace_weight``).
"""

import torch
from torch import nn


def replace_weight(m):
    """Assign a new Parameter instead of writing into the old one."""
    if type(m) == nn.Linear:
        m.weight = nn.Parameter(torch.full_like(m.weight, 3.0))


def reshape_data(m):
    """Set ``.data`` to a tensor of another shape."""
    if type(m) == nn.Linear:
        m.weight.data = torch.ones(3, 3)


def reshape_then_fail(m):
    """Change a shape, then fail half way."""
    if type(m) == nn.Linear:
        m.weight.data = torch.ones(2, 2)
        m.bias.data.fill_(5)
        raise RuntimeError("boom")


def to_double(m):
    """``.data = .data.double()``: another dtype."""
    if type(m) == nn.Linear:
        m.weight.data = m.weight.data.double()


def add_parameter(m):
    """Register a new parameter and a buffer, and drop the bias."""
    if type(m) == nn.Linear:
        m.extra = nn.Parameter(torch.zeros(2))
        m.register_buffer("count", torch.zeros(1))
        m.bias = None


def nothing(m):
    """Changes nothing."""


def to_meta(m):
    """Moves its module's tensors to the meta device (no values): the report has no moments to show."""
    if type(m) == nn.Linear:
        m.to("meta")
