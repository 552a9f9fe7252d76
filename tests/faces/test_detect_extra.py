"""Without the `detect` extra (dlib and its models), ingest of a dataset that needs detection is one
Error line saying what to install, before any work; datasets with landmarks still ingest."""
import subprocess
import sys

from fixtures import dataset_fixtures as fx

HIDE = "import sys; sys.modules['dlib'] = None; sys.modules['face_recognition_models'] = None\n"


def _ingest(args):
    code = HIDE + f"sys.argv = ['ferdata', *{args!r}]\nfrom ferdata.cli import main\nmain()\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_ingest_without_dlib_says_what_to_install(tmp_path):
    root = fx.make_folder(tmp_path / "photos", fx.sample_faces(), n_per_class=1)
    r = _ingest(["ingest", "folder", str(root), "-o", str(tmp_path / "f.h5")])
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: face detection needs dlib") and "ferdata[detect]" in lines[0]
    assert not (tmp_path / "f.h5").exists()
    ck = fx.make_ckplus(tmp_path / "CK+", fx.sample_faces(), n_subjects=1)      # ships its landmarks
    r = _ingest(["ingest", "ckplus", str(ck), "-o", str(tmp_path / "ck.h5"), "--size", "64"])
    assert r.returncode == 0, r.stderr
