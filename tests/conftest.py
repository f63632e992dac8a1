import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory):
    """Every sample checkpoint format, written once per test session."""
    from sample_models.checkpoints import write_all

    return write_all(str(tmp_path_factory.mktemp("ckpts")))


@pytest.fixture(scope="session")
def reference_state_dict():
    from sample_models.checkpoints import model_for_checkpoints

    return model_for_checkpoints().state_dict()


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)


def pytest_addoption(parser):
    parser.addoption("--fuzz", type=int, default=None,
                     help="hypothesis examples per format for the checkpoint fuzzer (default 40; try 2000)")
    parser.addoption("--kills", type=int, default=None, help="kill -9 rounds per format in the data-safety test (default 6)")


class PilotHelpers:
    """What Pilot tests share (the ``ui`` fixture): waiting for workers, selecting, typing edits, reading widgets."""

    @staticmethod
    async def settle(pilot, rounds: int = 3) -> None:
        """Wait until every worker has finished and the screen has caught up with their messages."""
        app = pilot.app
        for _ in range(rounds):
            await pilot.pause()
            await app.workers.wait_for_complete()
        await pilot.pause()

    @staticmethod
    async def wait_until(pilot, cond, seconds: float = 20.0) -> bool:
        """Pause until ``cond()`` holds (at most ``seconds``), for a worker that settle cannot wait for (a stuck one)."""
        import time

        deadline = time.monotonic() + seconds
        while not cond() and time.monotonic() < deadline:
            await pilot.pause(0.1)
        return cond()

    async def select(self, pilot, ref) -> None:
        """Reveal and select ``ref`` (a NodeRef) in the tree."""
        from modeltui.ui.widgets import ModuleTree

        pilot.app.query_one(ModuleTree).reveal(ref)
        await self.settle(pilot)

    async def edit_values(self, pilot, expr: str, tensor: str | None = None) -> None:
        """Select ``tensor`` (if given), press e, type ``expr``, press enter and wait for the edit."""
        from textual.widgets import Input

        from modeltui.ui.widgets import NodeRef

        if tensor is not None:
            await self.select(pilot, NodeRef("tensor", tensor))
        await pilot.press("e")
        await self.settle(pilot)  # a bare checkpoint is made editable in a worker first
        pilot.app.screen.query_one("#expr", Input).value = expr
        await pilot.press("enter")
        await self.settle(pilot)

    async def run_default_forward(self, pilot) -> None:
        """f, enter (the inferred shape), then close the result: lazy layers materialise."""
        await pilot.press("f", "enter")
        await self.settle(pilot)
        await pilot.press("escape")
        await self.settle(pilot)

    @staticmethod
    def error_text(screen) -> str:
        """A dialog's inline error line."""
        from textual.widgets import Static

        return str(screen.query_one("#error", Static).render())

    @staticmethod
    def text_of(app, selector: str) -> str:
        from textual.widgets import Static

        return str(app.query_one(selector, Static).render())

    @staticmethod
    def header(app) -> str:
        from modeltui.ui.widgets import HeaderBar

        return str(app.query_one(HeaderBar).render())

    @staticmethod
    def notes(app) -> list[str]:
        """The text of every notification shown so far."""
        return [n.message for n in app._notifications]

    @staticmethod
    def model_hash(model) -> str:
        """A hash of every value of ``model``: state_dict tensors and constants."""
        return model_hash(model)


def model_hash(model) -> str:
    """A hash of every value of ``model``: state_dict tensors and constants (tests compare it before / after)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for k, v in model.state_dict(keep_vars=True).items():
        h.update(k.encode())
        h.update(v.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    for m in model.modules():  # constants too
        for k, v in vars(m).items():
            if isinstance(v, torch.Tensor) and not isinstance(v, torch.nn.Parameter):
                h.update(v.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@pytest.fixture
def ui():
    """Pilot helpers: ``await ui.settle(pilot)``, ``ui.select``, ``ui.edit_values``, ``ui.error_text``…"""
    return PilotHelpers()


@pytest.fixture
def settle():
    """``await settle(pilot)``: the one way Pilot tests wait for workers."""
    return PilotHelpers.settle


@pytest.fixture
def wait_until():
    """``await wait_until(pilot, cond)``: pause until ``cond()`` holds, when a stuck worker keeps settle from returning."""
    return PilotHelpers.wait_until


@pytest.fixture
def notes():
    """``notes(app)``: the text of every notification shown so far."""
    return PilotHelpers.notes


@pytest.fixture(name="model_hash")
def model_hash_fixture():
    """``model_hash(model)``: a hash of every value (state_dict tensors and constants)."""
    return model_hash


def _tied_frozen_class():
    from torch import nn

    class TiedFrozen(nn.Module):
        """An embedding tied to the output layer (used twice) and a frozen middle layer."""

        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 8)
            self.mid = nn.Linear(8, 8)
            self.top = nn.Linear(8, 8)
            self.out = nn.Linear(8, 20, bias=False)
            self.out.weight = self.emb.weight
            self.mid.requires_grad_(False)

        def forward(self, idx):
            import torch

            return self.out(torch.tanh(self.top(torch.tanh(self.mid(self.emb(idx))))))

    return TiedFrozen


@pytest.fixture
def tied_frozen():
    """``tied_frozen()``: a fresh seeded model, an embedding tied to its output layer and a frozen middle layer (input 3,5)."""
    import torch

    cls = _tied_frozen_class()

    def make():
        torch.manual_seed(0)
        return cls()

    return make


@pytest.fixture
def nan_net():
    """``nan_net(layer)``: a seeded 5-layer MLP (input 2,4) with a NaN planted in ``layer``'s weight."""
    import torch
    from torch import nn

    def make(layer: int = 2):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
        with torch.no_grad():
            net[layer].weight[0, 0] = float("nan")
        return net

    return make
