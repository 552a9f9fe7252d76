"""Session fixtures shared by every test folder (tests/<stage>/ mirrors ferdata/<stage>/).

Shared helpers that are not fixtures live in the package tests/fixtures/; tests import them as
``from fixtures import dataset_fixtures as fx``. No test file imports another test file.
"""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

# tests/ on sys.path (also when pytest is run from elsewhere), so ``fixtures`` is importable;
# spawned worker processes get the same sys.path and can unpickle functions of fixtures._pool_tasks.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")


@pytest.fixture(scope="session")
def sample_images():
    """The two built-in public-domain sample faces (RGB uint8)."""
    from ferdata.datasets.sample import SAMPLE_FACES, sample_image

    return {name: sample_image(name) for name, _, _ in SAMPLE_FACES}


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    """``ferdata sample`` output: faces.h5 + backgrounds/ (made once per session)."""
    from ferdata.render.sample import make_sample

    out = tmp_path_factory.mktemp("sample")
    make_sample(out)
    return out


@pytest.fixture(scope="session")
def sample_landmarks(sample_images):
    from ferdata.faces.landmarks import find_landmarks

    return {k: find_landmarks(v) for k, v in sample_images.items()}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
