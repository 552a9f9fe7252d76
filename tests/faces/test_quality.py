"""Alignment quality proxies (ferdata.faces.quality), ``inspect``'s quality report and ``show --worst``."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ferdata.faces.align import template
from ferdata.cli import main
from ferdata.faces.quality import (MAX_ALIGNED_ANGLE, eye_line, face_quality, pre_alignment, template_residual,
                             worst_faces)

from fixtures import dataset_fixtures as fx, fixtures_wild as fw


def _rotate(pts, deg, centre):
    a = np.radians(deg)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (pts - centre) @ R.T + centre


def test_eye_line_and_pre_alignment():
    tpl = template(256)
    d, ang = eye_line(tpl)
    assert ang == pytest.approx(0, abs=1e-6)
    assert d == pytest.approx(np.hypot(*(tpl[42:48].mean(0) - tpl[36:42].mean(0))))
    d2, ang2 = eye_line(_rotate(tpl, 20, np.array([128, 128])) * 0.5)
    assert ang2 == pytest.approx(20, abs=1e-6) and d2 == pytest.approx(d / 2)
    assert pre_alignment(None) == {"iod_px": None, "eye_angle_deg": None}
    assert pre_alignment(tpl * 0.5)["iod_px"] == pytest.approx(d / 2, abs=0.01)


def test_flags_and_worst_order():
    rng = np.random.default_rng(0)
    tpl = template(128)
    shapes = np.stack([tpl + rng.normal(0, 1.0, tpl.shape) for _ in range(20)])
    shapes[5, :17] += [0, 25]                                  # jaw placed on the neck
    shapes[9] = _rotate(shapes[9], 15, tpl[27])                # eyes not level after alignment
    shapes[12] = np.nan                                        # pre-cropped, stored as is
    info = {"detector": ["hog"] * 19 + ["cnn"], "iod_px": [40.0] * 19 + [12.0], "eye_angle_deg": [0.0] * 20}
    q = face_quality(shapes.astype(np.float32), 128, info)
    assert template_residual(tpl[None], 128)[0] == pytest.approx(0)
    flagged = {i for i, f in enumerate(q["flags"]) if f}
    assert flagged == {5, 9, 19}
    assert "far from the template" in q["flags"][5][0]
    assert any("not level" in f for f in q["flags"][9]) and abs(q["aligned_angle_deg"][9]) > MAX_ALIGNED_ANGLE
    assert "small face" in q["flags"][19][0] and q["detector"][19] == "cnn"
    assert set(worst_faces(q, 3)) == {5, 9, 19} and 12 not in worst_faces(q, 20)
    assert np.isnan(q["residual"][12]) and q["flags"][12] == []


@pytest.fixture(scope="module")
def expw_store(tmp_path_factory):
    """An ExpW face store where the last listed face has a box 60 px to the right of the face."""
    tmp = tmp_path_factory.mktemp("quality")
    root = fw.make_expw(tmp / "ExpW", fx.sample_faces())
    lst = root / "label" / "label.lst"
    name, _f, top, left, right, bottom, *_ = lst.read_text().splitlines()[0].split()
    with open(lst, "a") as f:
        f.write(f"{name} 1 {top} {int(left) + 60} {int(right) + 60} {bottom} 50.0 3\n")
    out = tmp / "expw.h5"
    r = CliRunner().invoke(main, ["ingest", "expw", str(root), "-o", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def test_inspect_reports_quality(expw_store):
    r = CliRunner().invoke(main, ["inspect", str(expw_store), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    q = json.loads(r.output)["quality"]
    assert q["per_detector"] == {"box": 8} and q["flagged"] == 1
    assert q["worst"][0]["source"] == "image/origin/angry_actor_104.jpg:face1"
    assert "far from the template" in q["worst"][0]["flags"][0]
    assert 30 < q["iod_px_median"] < 60


def test_inspect_text_opens_quality_one_line_per_item(expw_store):
    r = CliRunner().invoke(main, ["inspect", str(expw_store)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    q = next(i for i, line in enumerate(lines) if line.strip() == "quality:")
    assert lines[q + 1].split() == ["per_detector:", "{'box':", "8}"]
    assert any(line.strip() == "flagged: 1" for line in lines[q:])
    worst = [line for line in lines[q:] if line.strip().startswith("- {")]
    assert len(worst) == 5 and "angry_actor_104.jpg:face1" in worst[0]


def test_show_worst(expw_store, tmp_path):
    import cv2

    out = tmp_path / "worst.png"
    r = CliRunner().invoke(main, ["show", str(expw_store), "--worst", "2", "--tile", "64", "-o", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "(2 tiles" in r.output
    assert cv2.imread(str(out)) is not None


def test_show_worst_needs_landmarks(tmp_path):
    root = fw.make_icml_face_data(tmp_path / "c", fx.sample_faces(), n_rows=3)
    out = tmp_path / "fer.h5"
    assert CliRunner().invoke(main, ["ingest", "fer2013", str(root), "-o", str(out)]).exit_code == 0
    r = CliRunner().invoke(main, ["show", str(out), "--worst", "4", "-o", str(tmp_path / "w.png")])
    assert r.exit_code == 1 and "Error:" in r.output and "no face with landmarks" in r.output
