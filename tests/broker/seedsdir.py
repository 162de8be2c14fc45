"""Where ../shared/seeds is (the same search as tests/integration/seeds.py, which this reuses
when it can be imported, so the two suites look in the same places)."""

import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
_INTEGRATION = os.path.join(os.path.dirname(HERE), "integration", "seeds.py")


def seeds_dir(*needed):
    spec = importlib.util.spec_from_file_location("roomcast_integration_seeds", _INTEGRATION)
    if spec is None or not os.path.isfile(_INTEGRATION):
        pytest.skip(f"{_INTEGRATION} is missing: cannot locate the seed documents")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.seeds_dir(*needed)
