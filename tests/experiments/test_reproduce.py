"""``ferdata reproduce``: a paper's table end to end on a fixture tree in the dataset's real
layout (CK+), with tiny epochs; resumable, refuses a changed setting, says which data is missing."""
import json
import time

import pytest
from click.testing import CliRunner

from ferdata.cli import main
from ferdata.experiments.tables import TABLES
from fixtures import dataset_fixtures as fx

TINY = ["--ingest-set", "size=64", "--render-set", "per_face=4", "--render-set", "size=32",
        "--render-set", "shard_size=64", "--set", "batch_size=8", "--set", "num_workers=0",
        "--set", "subjects_per_fold=null", "--set", "folds=2", "--set", "val_subjects=1",
        "--set", "neutral_subjects=null", "--set", "classes=null", "--set", "pretrained=none", "--set", "noise=[]", "--set", "noise_train=[]",
        "--set", 'model_kwargs={"width": 8, "input_size": [32, 32]}']


def test_list_names_each_table_and_its_data():
    r = CliRunner().invoke(main, ["reproduce", "--list"])
    assert r.exit_code == 0
    for t in TABLES.values():
        assert t.name in r.output and all(f"--data {n}=ROOT" in r.output for n in t.datasets)
    bad = CliRunner().invoke(main, ["reproduce", "feratt-table1", "--data", "fer2013=/x", "-o", "o"])
    assert bad.exit_code == 1 and "reads bu3dfe, ckplus" in bad.output


@pytest.mark.slow
def test_feratt_table1_end_to_end_on_a_ckplus_tree(tmp_path):
    ck = fx.make_ckplus(tmp_path / "CK+", fx.sample_faces(), n_subjects=6, codes=(5, 6))
    out = tmp_path / "out"
    args = ["reproduce", "feratt-table1", "--data", f"ckplus={ck}", "-o", str(out), *TINY]
    r = CliRunner().invoke(main, args + ["--set", "epochs=1"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "table.json").read_text())
    ck_rows = [row for row in res["rows"] if row["data"] == "ckplus"]
    assert len(ck_rows) == 6 and {row["column"] for row in ck_rows} == {"CK+ Synthetic", "CK+ Real"}
    for row in ck_rows:
        ours = row["ours"]["accuracy"]
        assert ours["folds"] == 2 and ours["complete"] and 0 <= ours["mean"] <= 100
        assert row["difference"]["accuracy"] == pytest.approx(ours["mean"] - row["paper"]["accuracy"]["mean"])
    real = next(row for row in ck_rows if row["column"] == "CK+ Real" and row["row"] == "FERAtt+Rep+Cls")
    assert real["paper"]["accuracy"] == {"mean": 90.30, "sd": 1.36}
    synth = json.loads((out / "cells" / "ck-synthetic-baseline" / "fold-00" / "config.json").read_text())
    assert synth["eval_on"] == "renders" and synth["test_data"].endswith("renders-test")
    assert synth["model"] == "preactresnet18" and synth["att_target"] == "masked"
    md = (out / "table.md").read_text()
    assert "| CK+ Real | FERAtt+Rep+Cls | 90.30 ± 1.36 / " in md and "add --data bu3dfe=ROOT" in md
    assert all(row["ours"]["accuracy"] is None for row in res["rows"] if row["data"] == "bu3dfe")
    # resumable: the same command again skips every finished step
    t = time.monotonic()
    again = CliRunner().invoke(main, args + ["--set", "epochs=1"])
    assert again.exit_code == 0 and json.loads((out / "table.json").read_text())["rows"] == res["rows"]
    assert time.monotonic() - t < 30
    # a changed setting is refused, naming it
    changed = CliRunner().invoke(main, args + ["--set", "epochs=2"])
    assert changed.exit_code == 1 and "epochs" in changed.output and "different configuration" in changed.output


def test_every_cell_of_every_table_resolves_to_its_recipe(tmp_path):
    """Each cell's configuration builds from its recipe (model and kwargs fit together), ids are unique."""
    from ferdata.experiments.reproduce import _cell_config, recipes_dir
    from ferdata.train.models import create_model

    for t in TABLES.values():
        ids = [c.id for c in t.cells]
        assert len(set(ids)) == len(ids) and all("--" not in i for i in ids)
        for c in t.cells:
            assert (recipes_dir() / c.recipe).exists(), c.recipe
            renders = {"train": str(tmp_path / "r"), "test": str(tmp_path / "rt")} if t.renders else None
            cfg = _cell_config(t, c, tmp_path / "faces.h5", renders, {})
            assert cfg.faces == str(tmp_path / "faces.h5") and cfg.name == f"{c.column}: {c.row}"
            assert (cfg.eval_on == "renders") == c.synthetic
            kw = {k: v for k, v in cfg.model_kwargs.items() if k != "att_encoder"}
            create_model(cfg.model, num_classes=7, **kw)       # the kwargs fit the model
