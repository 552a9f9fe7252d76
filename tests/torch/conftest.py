"""Fixtures shared by the torch tests (module-scoped: each test module renders its own)."""
from types import SimpleNamespace

import pytest

from fixtures.torch_renders import _render


@pytest.fixture(scope="module")
def renders(sample_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("torch_renders")
    raw = _render(sample_dir, d / "raw64", size=64, encoding="raw")
    jpg = _render(sample_dir, d / "jpeg128", size=128, encoding="jpeg")
    return SimpleNamespace(raw=d / "raw64", jpeg=d / "jpeg128", raw_job=raw, jpeg_job=jpg, root=d)
