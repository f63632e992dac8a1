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


async def _settle(pilot, rounds: int = 3) -> None:
    """Wait until every worker has finished and the screen has caught up with their messages."""
    app = pilot.app
    for _ in range(rounds):
        await pilot.pause()
        await app.workers.wait_for_complete()
    await pilot.pause()


@pytest.fixture
def settle():
    """``await settle(pilot)``: the one way Pilot tests wait for workers."""
    return _settle


@pytest.fixture
def notes():
    """``notes(app)``: the text of every notification shown so far."""
    return lambda app: [n.message for n in app._notifications]
