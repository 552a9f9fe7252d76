"""Fixtures of the dataset reader tests: the sample faces and one tree per dataset layout
(module-scoped: each test module builds its own)."""
import pytest

from fixtures import dataset_fixtures as fx

BUILDERS = {"ckplus": fx.make_ckplus, "fer2013": fx.make_fer2013, "ferplus": fx.make_ferplus,
            "jaffe": fx.make_jaffe, "bu3dfe": fx.make_bu3dfe, "rafd": fx.make_rafd,
            "affectnet": fx.make_affectnet, "folder": fx.make_folder}


@pytest.fixture(scope="module")
def faces():
    return fx.sample_faces()


@pytest.fixture(scope="module")
def trees(tmp_path_factory, faces):
    """One read-only tree per dataset, built once for the module."""
    base = tmp_path_factory.mktemp("datasets")
    return {name: build(base / name, faces) for name, build in BUILDERS.items()}
