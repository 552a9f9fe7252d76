"""``ferdata show`` on a render: each tile knows its global index, source face and subject."""
import h5py
import numpy as np

from ferdata.config import RenderConfig
from ferdata.render.run import render
from ferdata.shards.inspect import load_samples
from ferdata.viz import sheet_captions


def test_samples_carry_index_face_and_subject(sample_dir, tmp_path):
    out = tmp_path / "r"
    render(sample_dir / "faces.h5", sample_dir / "backgrounds", out, RenderConfig(per_face=12, shard_size=10, size=64))
    d = load_samples(out, 9, seed=3)
    assert len(d["index"]) == len(d["subject"]) == len(d["face_index"]) == len(d["image"]) == 9
    for g, f, subj, lab in zip(d["index"], d["face_index"], d["subject"], d["label"]):
        shard, j = divmod(int(g), 10)
        with h5py.File(out / f"shard-{shard:06d}.h5", "r") as h:
            assert int(h["face_index"][j]) == f and int(h["label"][j]) == lab
            import json
            assert json.loads(h.attrs["subjects"])[int(h["subject"][j])] == subj
    assert np.all(np.diff(d["index"]) > 0) and set(d["subject"]) <= {"astronaut", "grace_hopper", "camera"}
    caps = sheet_captions(d)
    assert caps[0][0].startswith(f"#{d['index'][0]} ") and caps[0][1] == d["subject"][0]
