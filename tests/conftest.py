import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parent))
import os

import numpy as np
import pytest

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
