"""ferdata cv (every fold, resumable, mean ± sample sd) and ferdata compare (same folds, Demšar's tests)."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as ss

import ferdata.train
from ferdata.cli import main
from ferdata.train.config import TrainConfig
from ferdata.errors import FerdataError
from ferdata.experiments.cv import run_cv
from ferdata.train.metrics import classification_report

CLASSES = ["happy", "neutral", "sad"]
PNG = b"\x89PNG\r\n\x1a\n"


def fake_report(acc, n=100, seed=0):
    """A test report with exactly ``round(acc * n)`` correct of ``n`` (classes cycle)."""
    y = np.arange(n) % 3
    p = y.copy()
    wrong = np.random.default_rng(seed).choice(n, n - round(acc * n), replace=False)
    p[wrong] = (y[wrong] + 1) % 3
    return classification_report(y, p, classes=CLASSES)


class FakeFit:
    """Writes eval.json / config.json like ferdata.train.fit, with given test accuracies."""

    def __init__(self, accs, subjects=None, crash_at=None, n=100, noise=False):
        self.accs, self.subjects, self.crash_at, self.calls, self.n = accs, subjects, crash_at, [], n
        self.noise, self.crash_before_ckpt = noise, None

    def __call__(self, cfg, out, resume=False, on_step=None, on_epoch=None, on_status=None):
        self.calls.append((cfg.fold, resume))
        out.mkdir(parents=True, exist_ok=True)
        if not resume and (out / "config.json").exists() and not cfg.overwrite:   # fit's run-folder guard
            raise FerdataError(f"{out}: already holds a run")
        subj = self.subjects[cfg.fold] if self.subjects else [f"S{cfg.fold}a", f"S{cfg.fold}b"]
        (out / "config.json").write_text(json.dumps({"fold": cfg.fold, "split": {
            "train_subjects": ["x"], "val_subjects": ["y"], "test_subjects": subj}}))
        if cfg.fold == self.crash_before_ckpt:
            self.crash_before_ckpt = None
            raise KeyboardInterrupt("interrupted before the first checkpoint")
        (out / "last.pt").write_bytes(b"ckpt")
        if cfg.fold == self.crash_at:
            self.crash_at = None
            raise KeyboardInterrupt("interrupted mid-fold")
        if on_step:
            on_step({"epoch": 0, "step": 1, "samples": 16})
        ev = {"val": fake_report(0.5), "test": fake_report(self.accs[cfg.fold], n=self.n, seed=cfg.fold),
              "best_epoch": 1, "epochs_run": 2, "parameters": 10}
        if self.noise:   # the sweep (trained clean) and FERAtt's study (fine-tuned with noise)
            a = self.accs[cfg.fold]
            ev["noise"] = {"0.1": a - 0.1, "0.3": a - 0.3}
            ev["noise_train"] = {"0.1": {"val_accuracy": 0.5, "test_accuracy": a - 0.05, "test_macro_f1": 0.4},
                                 "0.3": {"val_accuracy": 0.5, "test_accuracy": a - 0.15, "test_macro_f1": 0.3}}
        (out / "eval.json").write_text(json.dumps(ev))
        return ev


def cfg(**kw):
    return TrainConfig(protocol="kfold", epochs=2, **kw)


def test_cv_mean_and_sample_sd_equal_hand_computation(tmp_path):
    accs = [0.8, 0.6, 0.7, 0.9]
    s = run_cv(cfg(), tmp_path, fit=FakeFit(accs), n_folds=4, name="base")
    # hand: mean 0.75; deviations ±0.05, ±0.15 -> sd = sqrt((2·0.0025 + 2·0.0225) / (4 − 1))
    assert s["mean"]["accuracy"] == pytest.approx(0.75)
    assert s["std"]["accuracy"] == pytest.approx(math.sqrt(0.05 / 3))            # 0.1291, not 0.1118 (ddof=0)
    assert [f["accuracy"] for f in s["folds"]] == pytest.approx(accs)
    reps = [fake_report(a, seed=i) for i, a in enumerate(accs)]
    p = [r["macro"]["precision"] for r in reps]
    assert s["mean"]["precision"] == pytest.approx(sum(p) / 4)
    assert s["std"]["precision"] == pytest.approx(math.sqrt(sum((x - sum(p) / 4) ** 2 for x in p) / 3))
    assert s["complete"] and s["folds_done"] == [0, 1, 2, 3]
    on_disk = json.loads((tmp_path / "cv.json").read_text())
    assert on_disk["mean"] == s["mean"] and on_disk["std_ddof"] == 1
    assert on_disk["folds"][2]["test_split"] == {"test_subjects": ["S2a", "S2b"]}
    md = (tmp_path / "cv.md").read_text()
    assert "| base | 4 | 75.00 ± 12.91 |" in md
    summed = np.sum([r["confusion_matrix"] for r in reps], axis=0)
    cm = json.loads((tmp_path / "cv_confusion.json").read_text())
    assert cm["classes"] == CLASSES and np.array_equal(cm["matrix"], summed) and summed.sum() == 400
    assert (tmp_path / "confusion.png").read_bytes()[:8] == PNG
    assert not list(tmp_path.glob("*.tmp-*"))


def test_cv_resume_skips_finished_and_resumes_interrupted(tmp_path):
    accs = [0.8, 0.6, 0.7, 0.9]
    fit = FakeFit(accs, crash_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_cv(cfg(), tmp_path, fit=fit, n_folds=4)
    assert fit.calls == [(0, False), (1, False), (2, False)]
    assert not (tmp_path / "cv.json").exists()
    fit.calls.clear()
    s = run_cv(cfg(), tmp_path, fit=fit, n_folds=4)
    assert fit.calls == [(2, True), (3, False)]          # 0, 1 skipped; 2 resumes from last.pt
    assert s["mean"]["accuracy"] == pytest.approx(0.75)
    fit.calls.clear()
    run_cv(cfg(), tmp_path, fit=fit, n_folds=4)
    assert fit.calls == []


def test_cv_restarts_a_fold_that_died_before_its_first_checkpoint(tmp_path):
    fit = FakeFit([0.8, 0.6])
    fit.crash_before_ckpt = 1
    with pytest.raises(KeyboardInterrupt):
        run_cv(cfg(), tmp_path, fit=fit, n_folds=2)
    assert (tmp_path / "fold-01" / "config.json").exists() and not (tmp_path / "fold-01" / "last.pt").exists()
    fit.calls.clear()
    s = run_cv(cfg(), tmp_path, fit=fit, n_folds=2)     # fit's guard would refuse without overwrite
    assert fit.calls == [(1, False)] and s["complete"]


def test_cv_refuses_other_config_in_same_folder(tmp_path):
    run_cv(cfg(), tmp_path, fit=FakeFit([0.5, 0.6]), n_folds=2)
    with pytest.raises(FerdataError, match="different configuration.*lr"):
        run_cv(cfg(lr=0.5), tmp_path, fit=FakeFit([0.5, 0.6]), n_folds=2)
    run_cv(cfg(num_workers=7, device="cpu"), tmp_path, fit=FakeFit([0.5, 0.6]), n_folds=2)   # runtime keys: fine


def test_cv_subset_of_folds_then_the_rest(tmp_path):
    fit = FakeFit([0.8, 0.6, 0.7, 0.9])
    s = run_cv(cfg(), tmp_path, fit=fit, n_folds=4, folds="1:3", name="x")
    assert [c[0] for c in fit.calls] == [1, 2] and not s["complete"]
    assert "| x | 2 of 4 |" in (tmp_path / "cv.md").read_text()
    s = run_cv(cfg(), tmp_path, fit=fit, n_folds=4, folds="0,3")
    assert s["complete"] and s["mean"]["accuracy"] == pytest.approx(0.75)
    assert s["name"] == "x"                                 # the first call's --name is kept
    with pytest.raises(FerdataError, match="outside 0..3"):
        run_cv(cfg(), tmp_path, fit=fit, n_folds=4, folds="2:9")


def test_parse_folds():
    from ferdata.experiments.cv import parse_folds
    assert parse_folds(None, 4) == [0, 1, 2, 3] and parse_folds("1:3", 4) == [1, 2]
    assert parse_folds(":2", 4) == [0, 1] and parse_folds("2:", 4) == [2, 3] and parse_folds("3,0", 4) == [0, 3]
    for bad, msg in (("3:1", "selects no fold"), ("4", r"fold\(s\) \[4\] outside"), ("a:b", "expected a:b")):
        with pytest.raises(FerdataError, match=msg):
            parse_folds(bad, 4)


# ---------------------------------------------------------------- CLI: cv and compare

ORDERED = {"A": [0.60, 0.70, 0.65, 0.55, 0.62, 0.68, 0.58, 0.66],
           "B": [0.64, 0.73, 0.70, 0.58, 0.66, 0.70, 0.63, 0.69],
           "C": [0.70, 0.78, 0.72, 0.64, 0.69, 0.75, 0.66, 0.74]}


@pytest.fixture
def fake_train(monkeypatch):
    """`ferdata cv` with ferdata.train.fit / n_folds replaced by FakeFit over 8 folds."""
    state = {}

    def install(accs, subjects=None, n=100):
        monkeypatch.setattr(ferdata.train, "fit", FakeFit(accs, subjects, n=n))
        monkeypatch.setattr(ferdata.train, "n_folds", lambda c: len(accs), raising=False)
    state["install"] = install
    return install


def _cv(tmp_path, name, accs, install, subjects=None, n=100):
    install(accs, subjects, n)
    r = CliRunner().invoke(main, ["cv", "-o", str(tmp_path / name), "--name", name,
                                  "--set", "protocol=kfold", "--set", "epochs=1"])
    assert r.exit_code == 0, r.output
    return tmp_path / name


def test_compare_three_runs_known_ordering(tmp_path, fake_train):
    outs = [_cv(tmp_path, k, v, fake_train) for k, v in ORDERED.items()]
    r = CliRunner().invoke(main, ["compare", *map(str, outs), "--json", str(tmp_path / "c.json"),
                                  "-o", str(tmp_path / "t.md")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "c.json").read_text())
    # per-fold accuracies (100 samples each) as cv recorded them
    acc = {k: [round(a * 100) / 100 for a in v] for k, v in ORDERED.items()}
    assert res["friedman_p"] == pytest.approx(ss.friedmanchisquare(*acc.values()).pvalue)
    assert res["friedman_p"] < 0.05
    assert res["average_ranks"] == {"A": 3.0, "B": 2.0, "C": 1.0}
    k, n = 3, 8
    cd = ss.studentized_range.ppf(0.95, k, np.inf) / math.sqrt(2) * math.sqrt(k * (k + 1) / (6 * n))
    assert res["nemenyi"]["cd"] == pytest.approx(cd)                         # 1.172
    sig = {(p["a"], p["b"]) for p in res["nemenyi"]["pairs"] if p["significant"]}
    assert sig == {("A", "C")}
    bd = {x["name"]: x for x in res["bonferroni_dunn"]["runs"]}
    se = math.sqrt(k * (k + 1) / (6 * n))
    assert bd["C"]["p_adjusted"] == pytest.approx(2 * 2 * ss.norm.sf(2 / se)) and bd["C"]["significant"]
    table = (tmp_path / "t.md").read_text()
    assert table.splitlines()[0].startswith("| name | folds | Acc. | Prec. (macro) | Rec. (macro) | F1 = 2PR/(P+R) |")
    assert [l.split("|")[1].strip() for l in table.splitlines()[2:5]] == ["A", "B", "C"]
    assert "Friedman test" in r.output and "A vs C" in r.output


def test_compare_two_runs_gives_wilcoxon(tmp_path, fake_train):
    outs = [_cv(tmp_path, k, ORDERED[k], fake_train) for k in ("A", "C")]
    r = CliRunner().invoke(main, ["compare", *map(str, outs), "--json", str(tmp_path / "c.json")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "c.json").read_text())
    assert res["friedman_p"] is None and res["test"] == "wilcoxon"
    a = [round(x * 100) / 100 for x in ORDERED["A"]]
    c = [round(x * 100) / 100 for x in ORDERED["C"]]
    assert res["wilcoxon_p"] == pytest.approx(ss.wilcoxon(a, c).pvalue)
    assert "Friedman test needs at least 3" in r.output


def test_compare_refuses_mismatched_folds(tmp_path, fake_train):
    a = _cv(tmp_path, "A", ORDERED["A"], fake_train)
    fewer = _cv(tmp_path, "short", ORDERED["B"][:5], fake_train)
    subj = [[f"S{i}a", f"S{i}b"] for i in range(8)]
    subj[3] = ["S3a", "S9z"]
    other = _cv(tmp_path, "other", ORDERED["C"], fake_train, subjects=subj)
    faces = _cv(tmp_path, "faces", ORDERED["C"], fake_train, n=50)      # same subjects, other test faces
    for bad, why in ((fewer, "short: 5 folds, but"), (other, "other: fold 3 tests on other subjects"),
                     (faces, "faces: fold 0 has 50 test samples")):
        r = CliRunner().invoke(main, ["compare", str(a), str(bad)])
        assert r.exit_code == 1
        assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("Error: ") and why in r.output
    r = CliRunner().invoke(main, ["compare", str(a), str(a.parent / "C2")])   # same subjects: fine once it exists
    assert r.exit_code == 1 and "cv.json: does not exist" in r.output
    _cv(tmp_path, "C2", ORDERED["C"], fake_train)
    assert CliRunner().invoke(main, ["compare", str(a), str(a.parent / "C2")]).exit_code == 0


def test_cv_noise_studies_and_compare_noise_plot(tmp_path):
    accs = [0.8, 0.6, 0.7]
    for name, shift in (("A", 0.0), ("B", 0.05)):
        run_cv(cfg(noise=(0.1, 0.3)), tmp_path / name, fit=FakeFit([a + shift for a in accs], noise=True),
               n_folds=3, name=name)
    s = json.loads((tmp_path / "A" / "cv.json").read_text())
    assert s["noise"]["0.3"]["mean"] == pytest.approx(0.7 - 0.3)
    assert s["noise"]["0.3"]["std"] == pytest.approx(0.1)                  # sd of 0.5, 0.3, 0.4 (ddof=1)
    assert s["noise_train"]["0.1"]["mean"] == pytest.approx(0.7 - 0.05)
    assert (tmp_path / "A" / "noise.png").read_bytes()[:8] == PNG
    from ferdata.experiments.cv_summary import noise_curves
    curves, errors = noise_curves(s)
    assert curves["trained clean"] == pytest.approx({"0": 0.7, "0.1": 0.6, "0.3": 0.4})   # σ = 0: clean accuracy
    assert errors["trained clean"]["0"] == pytest.approx(0.1)
    r = CliRunner().invoke(main, ["compare", str(tmp_path / "A"), str(tmp_path / "B"),
                                  "--noise-plot", str(tmp_path / "fig9.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "fig9.png").read_bytes()[:8] == PNG
    run_cv(cfg(), tmp_path / "C", fit=FakeFit(accs), n_folds=3, name="C")
    run_cv(cfg(lr=5e-4), tmp_path / "D", fit=FakeFit(accs), n_folds=3, name="D")  # same scores, another run
    r = CliRunner().invoke(main, ["compare", str(tmp_path / "C"), str(tmp_path / "D"), "--noise-plot", "x.png"])
    assert r.exit_code == 1 and "no run has a noise study" in r.output


# ---------------------------------------------------------------- the real trainer, end to end

@pytest.mark.slow
def test_cv_and_compare_end_to_end_with_the_real_trainer(tmp_path):
    """`ferdata cv` with ferdata.train.fit on a 10-subject store for two tiny models, then
    `ferdata compare`: every face tested once, mean/sd from the folds' eval.json, resume skips."""
    from fixtures import train_fixtures as tf

    store = tf.make_store(tmp_path / "faces.h5", n_subjects=10)
    common = ["--set", f"faces={store}", "--set", "train_on=faces", "--set", "eval_on=faces",
              "--set", "protocol=kfold", "--set", "folds=3", "--set", "val_subjects=1", "--set", "epochs=1",
              "--set", "batch_size=16", "--set", "lr=3e-3", "--workers", "0", "--device", "cpu"]
    tiny = json.dumps(tf.TINY_MODEL)
    runs = {"preact": ["--set", "model=preactresnet18", "--set", f"model_kwargs={tiny}"],
            "deep": ["--set", "model=deep_emotion", "--set", 'model_kwargs={"input_size": [24, 24]}']}
    for name, args in runs.items():
        r = CliRunner().invoke(main, ["cv", "-o", str(tmp_path / name), "--name", name, *common, *args])
        assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "preact" / "cv.json").read_text())
    evs = [json.loads((tmp_path / "preact" / f"fold-{i:02d}" / "eval.json").read_text()) for i in range(3)]
    accs = [e["test"]["accuracy"] for e in evs]
    m = sum(accs) / 3
    assert s["complete"] and s["mean"]["accuracy"] == pytest.approx(m)
    assert s["std"]["accuracy"] == pytest.approx(math.sqrt(sum((a - m) ** 2 for a in accs) / 2))
    tested = [subj for f in s["folds"] for subj in f["test_split"]["test_subjects"]]
    assert sorted(tested) == [f"S{i:03d}" for i in range(10)]                  # each subject tested once
    assert sum(f["n"] for f in s["folds"]) == 10 * 3 * 2                         # … and every face
    cm = np.asarray(json.loads((tmp_path / "preact" / "cv_confusion.json").read_text())["matrix"])
    assert np.array_equal(cm, np.sum([e["test"]["confusion_matrix"] for e in evs], axis=0))
    r = CliRunner().invoke(main, ["cv", "-o", str(tmp_path / "preact"), "--name", "preact", *common, *runs["preact"]])
    assert r.exit_code == 0 and r.output.count("finished earlier, skipped") == 3
    r = CliRunner().invoke(main, ["compare", str(tmp_path / "preact"), str(tmp_path / "deep"),
                                  "--json", str(tmp_path / "c.json")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "c.json").read_text())
    assert res["folds_checked_by"] == "test subjects" and [x["name"] for x in res["rows"]] == ["preact", "deep"]
    assert res["per_fold"]["deep"] == [f["accuracy"] for f in
                                       json.loads((tmp_path / "deep" / "cv.json").read_text())["folds"]]


@pytest.mark.parametrize("record", ["corrupt", "deleted"])
def test_cv_never_relabels_finished_folds_of_another_configuration(tmp_path, record):
    """Each fold's own config.json is the truth, whatever cv_run.json says or lacks."""
    class RealConfigFit(FakeFit):
        def __call__(self, c, out, resume=False, on_step=None):
            ev = super().__call__(c, out, resume, on_step)
            d = json.loads((out / "config.json").read_text())
            d.update(json.loads(json.dumps(__import__("dataclasses").asdict(c), default=str)))
            (out / "config.json").write_text(json.dumps(d))
            return ev

    run_cv(cfg(lr=1e-3), tmp_path, fit=RealConfigFit([0.8, 0.6, 0.7]), n_folds=3, folds="0:2")
    if record == "corrupt":
        (tmp_path / "cv_run.json").write_text("{not json")
    else:
        (tmp_path / "cv_run.json").unlink()
    fit = RealConfigFit([0.8, 0.6, 0.7])
    with pytest.raises(FerdataError, match=r"fold-00/config.json: fold 0 was trained with another configuration "
                                           r"\(lr differ\)"):
        run_cv(cfg(lr=5e-3), tmp_path, fit=fit, n_folds=3)
    assert fit.calls == [] and not (tmp_path / "cv.json").read_text().count("0.005")


def test_compare_refuses_one_run_spelled_twice_a_copy_and_missing_folds(tmp_path, fake_train):
    import os
    import shutil

    a = _cv(tmp_path, "A", ORDERED["A"], fake_train)
    b = _cv(tmp_path, "B", ORDERED["B"], fake_train)
    os.symlink(a, tmp_path / "link")
    shutil.copytree(a, tmp_path / "copy")
    for other in (str(a) + "/", f"{tmp_path}/./A", str(tmp_path / "link"), str(tmp_path / "copy")):
        r = CliRunner().invoke(main, ["compare", str(a), str(b), other])
        assert r.exit_code == 1 and r.output.startswith("Error: ") and "are the same run" in r.output, (other, r.output)
        assert len(r.output.strip().splitlines()) == 1
    shutil.rmtree(b / "fold-03")
    r = CliRunner().invoke(main, ["compare", str(a), str(b)])
    assert r.exit_code == 1 and "fold-03/eval.json: fold 3 is listed" in r.output
    (b / "cv.json").write_text("{}")
    r = CliRunner().invoke(main, ["compare", str(a), str(b)])
    assert r.exit_code == 1 and "B/cv.json: not a ferdata cv summary" in r.output and "KeyError" not in r.output
