"""Every model of *Dive into Deep Learning*, chapter 6 ("Builders' Guide").

Names follow the book. Module-level instances exist as in the book; the
``make_*`` factories build fresh ones (tests use those so edits never leak).
Open any of them: ``modeltui sample_models.book:chimera -i 2,20``.
"""

import torch
from torch import nn
from torch.nn import functional as F

# 6.1 Layers and modules --------------------------------------------------


def make_net() -> nn.Module:
    """6.1's first MLP: ``nn.Sequential(LazyLinear(256), ReLU(), LazyLinear(10))``."""
    return nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))


class MLP(nn.Module):
    """6.1's custom MLP with a hidden and an output layer (input 2x20)."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.LazyLinear(256)
        self.out = nn.LazyLinear(10)

    def forward(self, X):
        return self.out(F.relu(self.hidden(X)))


class MySequential(nn.Module):
    """6.1's hand-written Sequential: children registered with add_module."""

    def __init__(self, *args):
        super().__init__()
        for idx, module in enumerate(args):
            self.add_module(str(idx), module)

    def forward(self, X):
        for module in self.children():
            X = module(X)
        return X


def make_my_sequential() -> nn.Module:
    return MySequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))


class FixedHiddenMLP(nn.Module):
    """6.1: a constant tensor (not a parameter) and control flow in forward."""

    def __init__(self):
        super().__init__()
        # Random weight parameters that will not compute gradients and
        # therefore keep constant during training
        self.rand_weight = torch.rand((20, 20))
        self.linear = nn.LazyLinear(20)

    def forward(self, X):
        X = self.linear(X)
        X = F.relu(X @ self.rand_weight + 1)
        # Reuse the fully connected layer: parameters are shared
        X = self.linear(X)
        # Control flow
        while X.abs().sum() > 1:
            X /= 2
        return X.sum()


class NestMLP(nn.Module):
    """6.1: modules nested inside modules."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.LazyLinear(64), nn.ReLU(), nn.LazyLinear(32), nn.ReLU())
        self.linear = nn.LazyLinear(16)

    def forward(self, X):
        return self.linear(self.net(X))


def make_chimera() -> nn.Module:
    """6.1's chimera: NestMLP, a LazyLinear and FixedHiddenMLP in a Sequential."""
    return nn.Sequential(NestMLP(), nn.LazyLinear(20), FixedHiddenMLP())


# 6.2 Parameter management ------------------------------------------------


def make_param_net() -> nn.Module:
    """6.2's net; with input 2x4: 0.weight [8,4], 0.bias [8], 2.weight [1,8], 2.bias [1]."""
    return nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(1))


def make_shared_net() -> nn.Module:
    """6.2's tied parameters: the same ``shared`` layer at positions 2 and 4."""
    shared = nn.LazyLinear(8)
    return nn.Sequential(nn.LazyLinear(8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.LazyLinear(1))


# 6.3 Parameter initialisation --------------------------------------------


def init_normal(module):
    """Weights from N(0, 0.01), biases zero (Linear layers only)."""
    if type(module) == nn.Linear:
        nn.init.normal_(module.weight, mean=0, std=0.01)
        nn.init.zeros_(module.bias)


def init_constant(module):
    """Weights 1, biases zero (Linear layers only)."""
    if type(module) == nn.Linear:
        nn.init.constant_(module.weight, 1)
        nn.init.zeros_(module.bias)


def init_xavier(module):
    """Xavier-uniform weights (Linear layers only)."""
    if type(module) == nn.Linear:
        nn.init.xavier_uniform_(module.weight)


def init_42(module):
    """Every Linear weight set to 42."""
    if type(module) == nn.Linear:
        nn.init.constant_(module.weight, 42)


def my_init(module):
    """The book's custom initialiser: U(-10, 10), then values with |w| < 5 zeroed."""
    if type(module) == nn.Linear:
        nn.init.uniform_(module.weight, -10, 10)
        module.weight.data *= module.weight.data.abs() >= 5


# 6.4 Lazy initialisation -------------------------------------------------


def make_lazy_net() -> nn.Module:
    """6.4's lazy MLP: shapes unknown until the first forward (2x20)."""
    return nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))


# 6.5 Custom layers --------------------------------------------------------


class CenteredLayer(nn.Module):
    """6.5: a layer without parameters that subtracts the mean."""

    def forward(self, X):
        return X - X.mean()


def make_centered_net() -> nn.Module:
    return nn.Sequential(nn.LazyLinear(128), CenteredLayer())


class MyLinear(nn.Module):
    """6.5: a layer with its own parameters (defaults so it builds bare)."""

    def __init__(self, in_units: int = 5, units: int = 3):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_units, units))
        self.bias = nn.Parameter(torch.randn(units,))

    def forward(self, X):
        linear = torch.matmul(X, self.weight.data) + self.bias.data
        return F.relu(linear)


def make_my_linear_net() -> nn.Module:
    """6.5: ``nn.Sequential(MyLinear(64, 8), MyLinear(8, 1))`` (input 2x64)."""
    return nn.Sequential(MyLinear(64, 8), MyLinear(8, 1))


# The book's module-level names ---------------------------------------------

net = make_net()
my_sequential = make_my_sequential()
chimera = make_chimera()
param_net = make_param_net()
shared_net = make_shared_net()
lazy_net = make_lazy_net()
centered_net = make_centered_net()
my_linear_net = make_my_linear_net()

#: TARGET -> input shape the book uses, for tests and docs
BOOK_INPUTS = {
    "make_net": [(2, 20)],
    "MLP": [(2, 20)],
    "make_my_sequential": [(2, 20)],
    "FixedHiddenMLP": [(2, 20)],
    "NestMLP": [(2, 20)],
    "make_chimera": [(2, 20)],
    "make_param_net": [(2, 4)],
    "make_shared_net": [(2, 4)],
    "make_lazy_net": [(2, 20)],
    "make_centered_net": [(4, 8)],
    "make_my_linear_net": [(2, 64)],
}
