import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def payloads(tmp_path_factory):
    """Every malicious checkpoint, sharing one sentinel path; (payloads, sentinel)."""
    from payloads import make_payloads

    folder = tmp_path_factory.mktemp("payloads")
    sentinel = str(folder / "SENTINEL")
    return make_payloads(str(folder / "files"), sentinel), sentinel
