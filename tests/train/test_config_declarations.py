"""Every TrainConfig key, tried with bad values generated from its declaration: one error
naming the key before any work starts (recipe, --set and the CLI alike)."""
import dataclasses
import math
import typing

import pytest
from click.testing import CliRunner

from ferdata.cli import main
from ferdata.errors import FerdataError
from ferdata.train.config import TrainConfig, bound_text
from ferdata.train.recipe import train_config

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _kind(name):
    tp = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return args[0]


def bad_values(name):
    """(value, why) pairs that must be refused for key ``name``."""
    meta, kind = FIELDS[name].metadata, _kind(name)
    out = []
    if kind in (int, float):
        out += [("abc", "wrong type"), ([1, 2], "wrong type"), (math.nan, "NaN"), (math.inf, "inf"),
                (-math.inf, "-inf")]
        if kind is int:
            out.append((1.5, "not an integer"))
        lo, hi = meta["lo"], meta["hi"]
        if lo is not None:
            out.append((lo if meta["lo_open"] else lo - 1, "below the bound"))
            if lo >= 0:
                out.append((-1, "negative"))
            if lo > 0 or (lo == 0 and meta["lo_open"]):
                out.append((0, "zero"))
        if hi is not None:
            out.append((hi if meta["hi_open"] else hi + 1, "above the bound"))
    elif meta["choices"]:
        out += [("bogus", "not a choice"), (3, "not a choice"), ({"a": 1}, "wrong type")]
    elif kind is bool:
        out += [("maybe", "wrong type"), (2, "wrong type")]
    elif kind is dict:
        out += [(3, "wrong type"), ("x", "wrong type")]
    elif kind is tuple:
        if meta["items_lo"] is not None:
            out += [([-1.0], "negative item"), ([math.nan], "NaN item"), ([math.inf], "inf item"), ("abc", "text item")]
    elif kind is str:
        out += [({"a": 1}, "wrong type"), ([1], "wrong type")]
    return out


CASES = [(k, v, why) for k in FIELDS for v, why in bad_values(k)]


def test_every_key_has_bad_values_or_is_free_text():
    free = {k for k in FIELDS if not bad_values(k)}
    assert free <= {"classes"}, free   # a list of class names: any list is well-formed
    assert len(CASES) >= 250


@pytest.mark.parametrize("key, value, why", CASES, ids=[f"{k}-{w}" for k, _, w in CASES])
def test_bad_value_is_one_error_naming_the_key(key, value, why):
    with pytest.raises(FerdataError) as e:
        train_config(None, {key: value})
    msg = str(e.value)
    assert msg.startswith("--set: " + key) or f"train config: {key} " in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("key", ["eval_batch_size", "plateau_factor", "select_metric", "noise_epochs",
                                 "early_stopping", "live_epoch_size"])
def test_keys_used_late_are_checked_before_the_first_epoch(key, tmp_path):
    bad = {"eval_batch_size": "0", "plateau_factor": "0", "select_metric": "val_acuracy", "noise_epochs": "-2",
           "early_stopping": "-1", "live_epoch_size": "0"}[key]
    r = CliRunner().invoke(main, ["train", "--set", f"{key}={bad}", "--set", "data=nowhere", "-o", str(tmp_path / "r")])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and key in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_cli_help_shows_the_declared_bounds():
    r = CliRunner().invoke(main, ["train", "--help"])
    assert bound_text(FIELDS["epochs"].metadata) in r.output     # ">= 1", the bound validate() uses
    r = CliRunner().invoke(main, ["train", "--epochs", "0"])
    assert r.exit_code == 2 and "--epochs" in r.output


def test_group_tables_dotted_keys_and_renamed_keys(tmp_path, monkeypatch):
    import warnings

    import ferdata.train.config as tc

    recipe = tmp_path / "r.toml"
    recipe.write_text('[optimisation]\nlr = 0.002\nepochs = 3\n[model]\nmodel = "va_cnn"\n')
    cfg = train_config(str(recipe), {"runtime.seed": 7})
    assert (cfg.lr, cfg.epochs, cfg.model, cfg.seed) == (0.002, 3, "va_cnn", 7)
    recipe.write_text('[model]\nlr = 0.002\n')
    with pytest.raises(FerdataError, match=r"model.lr is not a key of \[model\] \(it belongs to \[optimisation\]\)"):
        train_config(str(recipe))
    monkeypatch.setattr(tc, "RENAMED", {"learning_rate": "lr"})
    monkeypatch.setattr(tc, "_warned", set())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        a = train_config(None, {"learning_rate": 0.01})
        b = train_config(None, {"learning_rate": 0.02})
    assert (a.lr, b.lr) == (0.01, 0.02)
    assert [str(x.message) for x in w if issubclass(x.category, FutureWarning)] == [
        "--set: key 'learning_rate' is now 'lr' (the old name still works)"]


def test_train_on_is_an_enum_that_reads_and_writes_as_its_string():
    import json

    from ferdata.train.config import TrainOn

    cfg = TrainConfig(train_on="faces", protocol="kfold")
    assert cfg.train_on is TrainOn.FACES and cfg.train_on == "faces" and f"{cfg.train_on}" == "faces"
    assert json.loads(json.dumps(dataclasses.asdict(cfg)))["train_on"] == "faces"
    assert list(TrainConfig.groups()) == ["data", "protocol", "model", "optimisation", "augmentation", "runtime",
                                          "outputs"]
    assert sum(len(v) for v in TrainConfig.groups().values()) == len(FIELDS)
