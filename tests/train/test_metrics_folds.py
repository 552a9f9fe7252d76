"""Metrics against hand-computed values and subject-independent folds."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ferdata.train import folds as fo
from ferdata.train import metrics as M

# ----------------------------------------------------------------------------- metrics
# 3 classes, 8 samples:
#   true 0 0 0 1 1 1 2 2
#   pred 0 0 1 1 1 2 2 0
Y_TRUE = np.array([0, 0, 0, 1, 1, 1, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 1, 2, 2, 0])
CM = np.array([[2, 1, 0],
               [0, 2, 1],
               [1, 0, 1]])


def test_confusion_matrix_and_accuracy():
    cm = M.confusion_matrix(Y_TRUE, Y_PRED)
    assert cm.dtype == np.int64 and cm.tolist() == CM.tolist()
    assert M.accuracy(Y_TRUE, Y_PRED) == 5 / 8
    assert M.confusion_matrix(Y_TRUE, Y_PRED, num_classes=5).shape == (5, 5)
    scores = np.eye(3)[Y_PRED] + 0.1
    assert M.confusion_matrix(Y_TRUE, scores).tolist() == CM.tolist()      # argmax of scores
    assert M.accuracy(Y_TRUE, scores) == 5 / 8
    assert math.isnan(M.accuracy([], []))


def test_precision_recall_f1_by_hand():
    per = M.precision_recall_f1(CM)
    # precision = tp / column sum: 2/3, 2/3, 1/2 ; recall = tp / row sum: 2/3, 2/3, 1/2
    np.testing.assert_allclose(per["precision"], [2 / 3, 2 / 3, 1 / 2])
    np.testing.assert_allclose(per["recall"], [2 / 3, 2 / 3, 1 / 2])
    np.testing.assert_allclose(per["f1"], [2 / 3, 2 / 3, 1 / 2])
    assert per["support"].tolist() == [3, 3, 2]
    avg = M.averaged_scores(CM)
    assert avg["macro"]["precision"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
    assert avg["weighted"]["recall"] == pytest.approx((3 * 2 / 3 + 3 * 2 / 3 + 2 * 1 / 2) / 8)   # == accuracy
    # an asymmetric case: precision ≠ recall
    cm = np.array([[3, 0], [2, 1]])
    per = M.precision_recall_f1(cm)
    np.testing.assert_allclose(per["precision"], [3 / 5, 1.0])
    np.testing.assert_allclose(per["recall"], [1.0, 1 / 3])
    np.testing.assert_allclose(per["f1"], [2 * 0.6 / 1.6, 2 * (1 / 3) / (4 / 3)])
    avg = M.averaged_scores(cm)["macro"]
    mp, mr = (0.6 + 1) / 2, (1 + 1 / 3) / 2
    assert avg["f1"] == pytest.approx((0.75 + 0.5) / 2)
    assert avg["f1_of_macro"] == pytest.approx(2 * mp * mr / (mp + mr))


def test_zero_division_and_present_classes():
    # class 2 never true and never predicted: excluded from macro; class 1 never predicted: precision 0
    cm = M.confusion_matrix([0, 0, 1, 1], [0, 0, 0, 0], num_classes=3)
    per = M.precision_recall_f1(cm)
    assert per["precision"].tolist() == [0.5, 0.0, 0.0] and per["recall"].tolist() == [1.0, 0.0, 0.0]
    avg = M.averaged_scores(cm)["macro"]
    assert avg["precision"] == pytest.approx(0.25) and avg["recall"] == pytest.approx(0.5)
    assert M.averaged_scores(cm, labels=[0, 1, 2])["macro"]["recall"] == pytest.approx(1 / 3)
    assert all(math.isnan(v) for v in M.averaged_scores(np.zeros((2, 2), int))["macro"].values())


def test_metric_validation():
    with pytest.raises(ValueError, match="differ in length"):
        M.confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match="negative"):
        M.confusion_matrix([0, -1], [0, 0])
    with pytest.raises(ValueError, match="num_classes"):
        M.confusion_matrix([0, 3], [0, 0], num_classes=3)
    with pytest.raises(ValueError, match="integer"):
        M.accuracy([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="square"):
        M.precision_recall_f1(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="k must be"):
        M.topk_accuracy(np.zeros((2, 3)), [0, 1], k=4)


def test_topk_accuracy():
    scores = np.array([[0.1, 0.5, 0.4],     # true 2: rank 2
                       [0.9, 0.05, 0.05],   # true 0: rank 1
                       [0.2, 0.3, 0.5]])    # true 0: rank 3
    y = [2, 0, 0]
    assert M.topk_accuracy(scores, y, 1) == pytest.approx(1 / 3)
    assert M.topk_accuracy(scores, y, 2) == pytest.approx(2 / 3)
    assert M.topk_accuracy(scores, y, 3) == 1.0


def test_retrieval_topk_by_hand():
    # 1-D embeddings; neighbours by distance (self excluded)
    x = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [0.3]])
    y = np.array([0, 0, 1, 1, 1, 0])
    # k=1 nearest: 0→1 (0 ok), 1→0 or 2 (tie 0.1; stable → index 0, ok), 2→1 (0.1, label 0 ✗) [tie with 5 → index 1],
    #              3→4 ok, 4→3 ok, 5→2 (label 1 ✗)
    assert M.retrieval_topk_accuracy(x, y, k=1) == pytest.approx(4 / 6)
    # k=2: 0→{1,2}: 1/2 ; 1→{0,2}: 1/2 ; 2→{1,5}: 0 ; 3→{4,5}: 1/2 ; 4→{3,5}: 1/2 ; 5→{2,1}: 1/2
    assert M.retrieval_topk_accuracy(x, y, k=2) == pytest.approx((0.5 * 5) / 6)
    assert M.retrieval_topk_accuracy(x, y, k=2, mode="hit") == pytest.approx(5 / 6)
    # chunking does not change the result
    rng = np.random.default_rng(0)
    e, lab = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)
    assert M.retrieval_topk_accuracy(e, lab, 5, chunk=7) == pytest.approx(M.retrieval_topk_accuracy(e, lab, 5))
    # cosine: scaling an embedding does not move it; a brute-force precision@5 agrees
    scaled = e * rng.uniform(0.1, 10, size=(50, 1))
    assert M.retrieval_topk_accuracy(scaled, lab, 5, metric="cosine") == \
        pytest.approx(M.retrieval_topk_accuracy(e, lab, 5, metric="cosine"))
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)
    nn5 = np.argsort(-sim, axis=1, kind="stable")[:, :5]
    assert M.retrieval_topk_accuracy(e, lab, 5, metric="cosine") == pytest.approx(float((lab[nn5] == lab[:, None]).mean()))
    with pytest.raises(ValueError, match="k must be"):
        M.retrieval_topk_accuracy(x, y, k=6)


def test_nearest_class_mean_accuracy():
    x = np.array([[0.0, 0], [0.2, 0], [3.0, 3], [2.8, 3], [1.4, 1.4]])
    y = np.array([0, 0, 1, 1, 0])
    # batch means: class 0 = (0.533, 0.467), class 1 = (2.9, 3): sample 4 is nearer class 0's mean;
    # with swapped anchors (3,3) / (0,0) every sample lands in the other class
    assert M.nearest_class_mean_accuracy(x, y) == 1.0
    assert M.nearest_class_mean_accuracy(x, y, means=[[3, 3], [0, 0]]) == 0.0


def test_report_is_json_and_consistent(tmp_path):
    names = ["neutral", "happiness", "surprise"]
    scores = np.eye(3)[Y_PRED] * 0.7 + 0.1
    rep = M.classification_report(Y_TRUE, Y_PRED, classes=names, scores=scores)
    text = json.dumps(rep)
    assert json.loads(text) == rep
    assert rep["n"] == 8 and rep["accuracy"] == 5 / 8
    assert rep["confusion_matrix"] == CM.tolist()
    assert rep["per_class"]["surprise"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert rep["topk"]["top1" if "top1" in rep["topk"] else "top2"] >= rep["accuracy"]
    agg = M.aggregate_reports([rep, M.classification_report([0, 1, 2], [0, 1, 2], classes=names)])
    assert agg["folds"] == 2
    assert agg["mean"]["accuracy"] == pytest.approx((5 / 8 + 1) / 2)
    assert agg["std"]["accuracy"] == pytest.approx((1 - 5 / 8) / 2)
    assert agg["confusion_matrix"] == (CM + np.eye(3, dtype=int)).tolist()
    json.dumps(agg)
    with pytest.raises(ValueError, match="class names"):
        M.classification_report(Y_TRUE, Y_PRED, classes=["a", "b"], num_classes=3)


def test_plot_confusion(tmp_path):
    out = M.plot_confusion(CM, ["neutral", "happiness", "surprise"], tmp_path / "sub" / "cm.png", title="fold 0")
    data = open(out, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    M.plot_confusion(np.zeros((8, 8), int), None, tmp_path / "empty.png", normalize=False)
    with pytest.raises(ValueError, match="class names"):
        M.plot_confusion(CM, ["a"], tmp_path / "x.png")


def test_metrics_module_is_numpy_only():
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(M))
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "torch" not in mods and "sklearn" not in mods
    tree = ast.parse(inspect.getsource(fo))
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "torch" not in mods


# ------------------------------------------------------------------------------- folds
def _ckplus_like(n_subjects=118, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 8, n_subjects)
    return np.repeat(np.array([f"S{i:03d}" for i in range(n_subjects)]), counts)


@pytest.mark.parametrize("kw", [{"k": 5}, {"k": 10}, {"subjects_per_fold": 10}, {"subjects_per_fold": 1}])
def test_subject_kfold_is_subject_independent_and_covering(kw):
    subj = _ckplus_like()
    rng = np.random.default_rng(1)
    subj = subj[rng.permutation(subj.size)]          # samples in any order
    folds = fo.subject_kfold(subj, seed=3, **kw)
    tested = np.concatenate([f.test for f in folds])
    assert np.array_equal(np.sort(tested), np.arange(subj.size))           # every sample tested exactly once
    for f in folds:
        assert not set(subj[f.train]) & set(subj[f.test])                    # never a subject on both sides
        assert np.array_equal(np.sort(np.concatenate([f.train, f.test])), np.arange(subj.size))
        assert set(subj[f.test]) == set(f.test_subjects.tolist())
        train, test = f                                                     # unpacks like sklearn
        assert train is f.train and test is f.test
    held = np.concatenate([f.test_subjects for f in folds])
    assert np.array_equal(np.sort(held), np.unique(subj))                    # each subject held out once
    ids = fo.fold_ids(subj.size, folds)
    assert (ids >= 0).all()


def test_leave_10_subjects_out_fold_sizes_and_determinism():
    subj = _ckplus_like(118)
    folds = fo.subject_kfold(subj, subjects_per_fold=10, seed=0)
    assert [len(f.test_subjects) for f in folds] == [10] * 11 + [8]
    again = fo.subject_kfold(subj, subjects_per_fold=10, seed=0)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again))
    other = fo.subject_kfold(subj, subjects_per_fold=10, seed=1)
    assert not all(np.array_equal(a.test, b.test) for a, b in zip(folds, other))
    five = fo.subject_kfold(subj, k=5)
    assert sorted(len(f.test_subjects) for f in five) == [23, 23, 24, 24, 24]
    # JAFFE-like: 10 subjects, 5 folds of 2; ordered (no shuffle) groups are contiguous
    jaffe = np.repeat(["KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"], 21)
    ordered = fo.subject_kfold(jaffe, k=5, shuffle=False)
    assert [f.test_subjects.tolist() for f in ordered][0] == ["KA", "KL"]
    json.dumps(ordered[0].to_dict())


def test_subject_kfold_int_subjects_and_errors():
    folds = fo.subject_kfold(np.array([3, 3, 1, 2, 2, 7]), k=2)
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(6))
    with pytest.raises(ValueError, match="exactly one"):
        fo.subject_kfold(["a", "b"])
    with pytest.raises(ValueError, match="exactly one"):
        fo.subject_kfold(["a", "b"], k=2, subjects_per_fold=1)
    with pytest.raises(ValueError, match="at least 3 subjects"):
        fo.subject_kfold(["a", "b", "b"], k=3)
    with pytest.raises(ValueError, match="k must be"):
        fo.subject_kfold(["a", "b"], k=1)
    with pytest.raises(ValueError, match="leaves no training"):
        fo.subject_kfold(["a", "b"], subjects_per_fold=2)
    with pytest.raises(ValueError, match="subject id"):
        fo.subject_kfold(["a", "", "b"], k=2)
    with pytest.raises(ValueError, match="None"):
        fo.subject_kfold(np.array(["a", None, "b"], dtype=object), k=2)
    with pytest.raises(ValueError, match="1-D"):
        fo.subject_kfold(np.zeros((2, 2)), k=2)
    with pytest.raises(ValueError, match="empty"):
        fo.subject_kfold([], k=2)


def test_split_by_subject():
    subj = _ckplus_like(40)
    sp = fo.split_by_subject(subj, test_fraction=0.25, val_fraction=0.1, seed=0)
    assert set(sp) == {"train", "val", "test"}
    parts = [set(subj[sp[k]]) for k in ("train", "val", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(parts[2]) == 10 and len(parts[1]) == 4
    assert np.array_equal(np.sort(np.concatenate(list(sp.values()))), np.arange(subj.size))
    sp2 = fo.split_by_subject(subj, test_subjects=["S000", "S005"])
    assert set(subj[sp2["test"]]) == {"S000", "S005"} and "val" not in sp2
    assert not set(subj[sp2["train"]]) & {"S000", "S005"}
    with pytest.raises(ValueError, match="not in subjects"):
        fo.split_by_subject(subj, test_subjects=["nobody"])
    with pytest.raises(ValueError, match="exactly one"):
        fo.split_by_subject(subj)
    with pytest.raises(ValueError, match="test_fraction"):
        fo.split_by_subject(subj, test_fraction=1.0)
    with pytest.raises(ValueError, match="no subject left"):
        fo.split_by_subject(["a", "b"], test_fraction=0.5, val_fraction=0.5)


def test_check_subject_disjoint():
    subj = ["a", "a", "b", "c"]
    fo.check_subject_disjoint(subj, [0, 1], [2, 3])
    with pytest.raises(ValueError, match="subject 'a'"):
        fo.check_subject_disjoint(subj, [0, 2], [1, 3])
    with pytest.raises(ValueError, match="more than one split"):
        fo.check_subject_disjoint(subj, [0, 1], [1, 2])
    with pytest.raises(ValueError, match="out of range"):
        fo.check_subject_disjoint(subj, [0, 9])


def test_official_fer2013_split():
    usage = ["Training", "PublicTest", "Training", "PrivateTest", "PrivateTest"]
    sp = fo.fer2013_official_split(usage)
    assert {k: v.tolist() for k, v in sp.items()} == {"train": [0, 2], "val": [1], "test": [3, 4]}
    sp = fo.official_split(np.array([b"train", b"test", b"val"]))
    assert {k: v.tolist() for k, v in sp.items()} == {"train": [0], "val": [2], "test": [1]}
    assert fo.official_split(["train"])["test"].size == 0
    with pytest.raises(ValueError, match="unknown split"):
        fo.official_split(["train", "Validation"])
    with pytest.raises(ValueError, match="unknown split"):
        fo.official_split(["train", ""])


def test_macro_over_the_run_classes_present_in_a_fold_and_feratt_f1():
    """A CK+ fold without contempt: macro averages run over the run's classes present there
    (0/0 counts as 0), and FERAtt's F1 is the harmonic mean of macro P and R."""
    classes = ["neutral", "happiness", "contempt"]
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0, 1, 1, 1, 0])
    rep = M.classification_report(y, p, classes=classes)
    assert rep["macro_over"] == ["neutral", "happiness"]               # contempt: no test face, no prediction
    prec = (1 / 2 + 2 / 3) / 2
    rec = (1 / 2 + 2 / 3) / 2
    assert rep["macro"]["precision"] == pytest.approx(prec) and rep["macro"]["recall"] == pytest.approx(rec)
    assert rep["macro"]["f1_of_macro"] == pytest.approx(2 * prec * rec / (prec + rec))
    rep2 = M.classification_report(y, np.array([0, 2, 1, 1, 0]), classes=classes)   # contempt predicted once
    assert rep2["macro_over"] == classes and rep2["per_class"]["contempt"]["precision"] == 0.0
    # FERAtt Table 1, BU-3DFE baseline: P 71.48, R 69.56 -> F1 70.51 (the table prints 70.50)
    assert 2 * 71.48 * 69.56 / (71.48 + 69.56) == pytest.approx(70.51, abs=0.005)
