"""aeclust.evaluation: per-subject splits, the paper's classifiers, the dAE protocol, the bench."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from sklearn.svm import SVC

from aeclust.bench import ProtocolError, ResultStore, render_report, run_protocol
from aeclust.bench.protocol import validate
from aeclust.evaluation import (
    ENCODERS,
    Representation,
    check_split_spec,
    evaluate,
    evaluate_split,
    make_classifier,
    per_class_kfold,
    per_class_random_split,
    split_for_seed,
)


class StagedEncoder(TransformerMixin, BaseEstimator):
    """Stand-in with ClassSeparatingAE's interface: supervised ``fit(X, y)``, ``n_stages_`` =
    ``n_shifts + 1`` and ``transform(X, stage=None)``. Stage 0 is PCA (the "standard AE"); stage
    i mixes in a fraction i / n_shifts of the LDA projection (the "shifted" codes)."""

    def __init__(self, shift="class", embedding_dim=4, n_shifts=2, random_state=None):
        self.shift = shift
        self.embedding_dim = embedding_dim
        self.n_shifts = n_shifts
        self.random_state = random_state

    n_fits = 0  # class-level counter of fits (the bench shares one fit per split)

    def fit(self, X, y):
        type(self).n_fits += 1
        if self.shift not in ("class", "class+rival"):
            raise ValueError(f"bad shift {self.shift!r}")
        X = np.asarray(X, dtype=np.float64)
        self.pca_ = PCA(self.embedding_dim, random_state=self.random_state).fit(X)
        k = min(self.embedding_dim, len(np.unique(y)) - 1)
        self.lda_ = LinearDiscriminantAnalysis(n_components=k).fit(X, y)
        self.n_stages_ = self.n_shifts + 1
        self.fit_calls_ = 1
        return self

    def transform(self, X, stage=None):
        X = np.asarray(X, dtype=np.float64)
        stage = self.n_shifts if stage is None else stage
        if not 0 <= stage < self.n_stages_:
            raise ValueError(f"stage must be in [0, {self.n_stages_})")
        z = self.pca_.transform(X)
        w = stage / max(self.n_shifts, 1)
        lda = self.lda_.transform(X)
        z[:, : lda.shape[1]] = (1 - w) * z[:, : lda.shape[1]] + w * 5 * lda
        return z


def _blobs(n_classes=4, per_class=10, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), per_class)
    x = centres[y] + rng.normal(0, 1.2, size=(len(y), dim))
    return x.astype(np.float32), y


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def test_kfold_deals_every_class_evenly_and_tests_each_sample_once():
    y = np.repeat(np.arange(40), 10)  # ORL: 40 subjects x 10 images
    folds = per_class_kfold(y, 5, random_state=3)
    tested = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tested), np.arange(400))
    for tr, te in folds:
        assert np.array_equal(np.bincount(y[te]), np.full(40, 2))  # 80 / 20 per person
        assert np.array_equal(np.bincount(y[tr]), np.full(40, 8))
        assert not np.intersect1d(tr, te).size
    # seeded: same seed same folds, another seed other folds
    again = per_class_kfold(y, 5, random_state=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    assert not np.array_equal(per_class_kfold(y, 5, random_state=4)[0][1], folds[0][1])


def test_kfold_uneven_classes_differ_by_at_most_one():
    y = np.repeat(np.arange(3), [7, 11, 5])
    folds = per_class_kfold(y, 5, random_state=0)
    counts = np.array([np.bincount(y[te], minlength=3) for _, te in folds])
    assert (counts.max(0) - counts.min(0) <= 1).all() and counts.sum() == len(y)


def test_random_split_halves_every_class():
    y = np.repeat(np.arange(38), [64] * 10 + [59, 60, 63] + [64] * 25)  # Extended Yale B-like
    tr, te = per_class_random_split(y, 0.5, random_state=1)
    n_tr, n_te = np.bincount(y[tr]), np.bincount(y[te])
    assert np.all(np.abs(n_tr - n_te) <= 1) and len(tr) + len(te) == len(y)
    assert not np.intersect1d(tr, te).size
    tr2, _ = per_class_random_split(y, 0.5, random_state=2)
    assert not np.array_equal(tr, tr2)


def test_split_for_seed_maps_seeds_to_folds_then_repetitions():
    y = np.repeat(np.arange(5), 10)
    spec = {"scheme": "kfold", "n_folds": 5}
    tests = [split_for_seed(y, spec, s)[1] for s in range(5)]
    assert np.array_equal(np.sort(np.concatenate(tests)), np.arange(50))  # seeds 0-4: one CV
    assert not np.array_equal(split_for_seed(y, spec, 5)[1], tests[0])  # seed 5: new shuffle
    tr, te = split_for_seed(y, {"scheme": "random", "train_size": 0.5}, 7)
    assert len(tr) == len(te) == 25


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"scheme": "loo"}, "split scheme"),
        ({"scheme": "kfold", "n_folds": 1}, "n_folds"),
        ({"scheme": "random", "train_size": 1.5}, "train_size"),
        ({"scheme": "random", "n_folds": 5}, "does not take"),
    ],
)
def test_bad_split_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        check_split_spec(spec)


def test_bad_split_inputs():
    with pytest.raises(ValueError, match="fewer than n_folds"):
        per_class_kfold(np.array([0, 0, 1, 1, 1, 1, 1]), 5)
    with pytest.raises(ValueError, match="single sample"):
        per_class_random_split(np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="non-negative"):
        split_for_seed(np.repeat([0, 1], 5), None, -1)


# ---------------------------------------------------------------------------------------------
# Classifiers
# ---------------------------------------------------------------------------------------------


def test_classifiers_are_the_papers_with_our_defaults():
    assert isinstance(make_classifier("softmax"), LogisticRegression)
    assert isinstance(make_classifier("nearest-centroid"), NearestCentroid)
    assert make_classifier("knn").n_neighbors == 5
    assert make_classifier("knn", {"n_neighbors": 1}).n_neighbors == 1
    svm = make_classifier("svm")
    assert isinstance(svm, SVC) and svm.kernel == "rbf" and svm.gamma == "scale"
    assert make_classifier("svm", standardize=True).steps[0][0] == "standardscaler"
    with pytest.raises(ValueError, match="unknown classifier 'tree'"):
        make_classifier("tree")
    with pytest.raises(ValueError, match="does not accept"):
        make_classifier("knn", {"k": 3})
    with pytest.raises(ValueError, match="RBF"):
        make_classifier("svm", {"kernel": "linear"})


# ---------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------


def test_pixels_accuracy_equals_sklearn_on_the_training_fold_only():
    x, y = _blobs()
    tr, te = split_for_seed(y, None, 0)
    res = evaluate_split(x, y, tr, te, {"no-ae": None}, seed=0)
    for name, clf in [("knn", KNeighborsClassifier(5)), ("nc", NearestCentroid())]:
        expected = np.mean(clf.fit(x[tr], y[tr]).predict(x[te]) == y[te])
        assert res.accuracy[("no-ae", name)] == pytest.approx(expected)
    assert set(res.accuracy) == {("no-ae", c) for c in ("mlp", "nc", "knn", "svm")}
    assert res.stage_accuracy == {} and res.fit_seconds["no-ae"] == 0.0


def test_shared_encoder_is_fitted_once_and_stages_are_scored():
    x, y = _blobs()
    tr, te = split_for_seed(y, None, 1)
    dae = StagedEncoder(n_shifts=2)
    seen = []
    original = StagedEncoder.fit

    def counting_fit(self, X, y):
        seen.append((len(X), self.random_state))
        return original(self, X, y)

    StagedEncoder.fit = counting_fit
    try:
        res = evaluate_split(
            x,
            y,
            tr,
            te,
            {"ae": Representation(dae, stage=0), "dae-1": dae},
            {"knn": "knn", "svm": "svm"},
            seed=1,
        )
    finally:
        StagedEncoder.fit = original
    assert seen == [(len(tr), 1)]  # one fit, on the training fold, seeded with the split seed
    assert dae.random_state is None  # the given encoder is not modified
    for c in ("knn", "svm"):
        curve = res.stage_accuracy[("dae-1", c)]
        assert len(curve) == 3
        assert curve[0] == res.accuracy[("ae", c)]  # the standard AE codes are stage 0
        assert curve[-1] == res.accuracy[("dae-1", c)]
    assert ("ae", "knn") not in res.stage_accuracy  # a fixed-stage input has no curve
    assert res.fit_seconds["ae"] == res.fit_seconds["dae-1"] > 0


def test_evaluate_is_deterministic_and_summarises():
    x, y = _blobs(per_class=10)
    reps = {"no-ae": None, "dae-2": StagedEncoder("class+rival", random_state=0)}
    a = evaluate(x, y, reps, {"nc": "nearest-centroid"}, seeds=3)
    b = evaluate(x, y, reps, {"nc": "nearest-centroid"}, seeds=3)
    sa, sb = a.summary(), b.summary()
    assert sa == sb and set(sa) == {("no-ae", "nc"), ("dae-2", "nc")}
    mean, std = sa[("dae-2", "nc")]
    assert 0.0 <= mean <= 1.0 and std >= 0.0
    assert a.stage_summary()[("dae-2", "nc")].shape == (3,)
    # random 50/50 splits
    r = evaluate(
        x, y, {"no-ae": None}, {"nc": "nearest-centroid"}, split={"scheme": "random"}, seeds=[4]
    )
    assert len(r.splits[0].test_index) == 20


def test_evaluate_rejects_bad_input():
    x, y = _blobs()
    with pytest.raises(ValueError, match="2-D"):
        evaluate(x[0], y, {"no-ae": None})
    with pytest.raises(ValueError, match="shape"):
        evaluate(x, y[:-1], {"no-ae": None})
    with pytest.raises(TypeError, match="representation 'bad'"):
        evaluate(x, y, {"bad": 3})
    with pytest.raises(ValueError, match="a stage needs an encoder"):
        evaluate(x, y, {"bad": Representation(None, stage=1)})
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate(bad, y, {"no-ae": None})


def test_encoder_registry_names_the_dae():
    assert ENCODERS["pixels"] is None and "ClassSeparatingAE" in str(ENCODERS["dae"])


# ---------------------------------------------------------------------------------------------
# The bench runs classification protocols
# ---------------------------------------------------------------------------------------------

TINY_CLF = """
name = "tinyclf"
title = "Tiny classification protocol on digits"
citation = "aeclust tests"
table = "Table 4"
kind = "classification"
metrics = ["acc"]
nmi_average = "arithmetic"
seeds = 2

[methods.no-ae]
estimator = "pixels"
label = "No AE"

[methods.ae]
estimator = "dae"
label = "AE"
stage = 0
shift = "class"
embedding_dim = 8
hidden_dims = [16]
n_shifts = 2
epochs = 2
shift_epochs = 1
batch_size = 256

[methods.dae-1]
estimator = "dae"
label = "dAE-1"
shift = "class"
embedding_dim = 8
hidden_dims = [16]
n_shifts = 2
epochs = 2
shift_epochs = 1
batch_size = 256

[classifiers.nc]
type = "nearest-centroid"
label = "NC"

[classifiers.knn]
type = "knn"
label = "kNN"
n_neighbors = 3

[datasets.digits]
label = "Digits"

[datasets.digits.split]
scheme = "random"
train_size = 0.5

[paper.dae-1-knn.digits]
acc = 0.9
acc_std = 0.01

[quick]
seeds = 1

[quick.datasets]
digits = "digits"
"""


# a representation whose alpha is chosen by inner cross-validation (appended to TINY_CLF)
TINY_SELECT = """
[methods.dae-cv]
estimator = "dae"
label = "dAE-1, alpha by inner CV"
shift = "class"
embedding_dim = 8
hidden_dims = [16]
n_shifts = 2
epochs = 2
shift_epochs = 1
batch_size = 256

[methods.dae-cv.select]
grid = { alpha = [0.3, 0.9] }
n_folds = 2
classifiers = ["nc"]
"""


@pytest.fixture
def tiny_clf(tmp_path: Path) -> Path:
    # the real ClassSeparatingAE, tiny (2 epochs, then 1 per shift)
    path = tmp_path / "tinyclf.toml"
    path.write_text(TINY_CLF)
    return path


def test_bench_runs_a_classification_protocol_and_resumes(
    tiny_clf: Path, tmp_path: Path, digits, monkeypatch: pytest.MonkeyPatch
):
    from aeclust.methods.ccae import ClassSeparatingAE

    db = tmp_path / "r.db"
    fits = []
    original = ClassSeparatingAE.fit

    def counting_fit(self, X, y=None):
        fits.append((len(X), self.random_state))
        return original(self, X, y)

    monkeypatch.setattr(ClassSeparatingAE, "fit", counting_fit)
    summary = run_protocol(tiny_clf, db=db)
    assert len(summary.completed) == 3 * 2 * 2 and not summary.failures
    # ae and dae-1 share one fit per split, on the training half, seeded with the split's seed
    assert fits == [(898, 0), (898, 1)]
    with ResultStore(db) as store:
        runs = {(r["method"], r["seed"]): r for r in store.runs("tinyclf")}
    for seed in (0, 1):
        ae, dae = runs[("ae-knn", seed)], runs[("dae-1-knn", seed)]
        curve = [h["acc"] for h in json.loads(dae["history_json"])]
        assert len(curve) == 3 and dae["n_history"] == 3
        assert curve[0] == ae["acc"] and curve[-1] == dae["acc"]  # stage 0 = the standard AE
        assert ae["history_json"] is None and ae["fit_seconds"] == dae["fit_seconds"]
        assert runs[("no-ae-nc", seed)]["fit_seconds"] == 0.0
        config = json.loads(dae["config_json"])
        assert config["split"]["n_train"] + config["split"]["n_test"] == 1797
        assert config["split"]["scheme"] == "random" and config["stage"] is None
        assert config["classifier"] == {
            "name": "knn",
            "type": "knn",
            "params": {"n_neighbors": 3},
            "standardize": False,
        }
        assert config["params"]["random_state"] == seed
    # the pixel rows are exactly sklearn on the same split
    x, y = digits
    tr, te = split_for_seed(y, {"scheme": "random", "train_size": 0.5}, 1)
    expected = np.mean(NearestCentroid().fit(x[tr], y[tr]).predict(x[te]) == y[te])
    assert runs[("no-ae-nc", 1)]["acc"] == pytest.approx(expected)
    assert (tmp_path / "plots" / "tinyclf" / "digits" / "accuracy-vs-shift-full.png").is_file()

    again = run_protocol(tiny_clf, db=db)
    assert not again.completed and len(again.already_done) == 12

    md = render_report(db)
    assert "| dAE-1 | " in md and "/ 90.00 ± 1.00" in md  # the paper's layout, ours / paper
    assert "after each target shift" in md and "| dAE-1, kNN | 2 |" in md


def test_bench_selects_rows_or_inputs_and_skips_missing_encoders(
    tiny_clf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    one = run_protocol(tiny_clf, db=tmp_path / "a.db", methods=["dae-1-knn"], quick=True)
    assert [c.method for c in one.completed] == ["dae-1-knn"]
    both = run_protocol(tiny_clf, db=tmp_path / "b.db", methods=["no-ae"], quick=True)
    assert sorted(c.method for c in both.completed) == ["no-ae-knn", "no-ae-nc"]
    with pytest.raises(ValueError, match="unknown method or row 'dae-9'"):
        run_protocol(tiny_clf, db=tmp_path / "c.db", methods=["dae-9"])
    monkeypatch.setitem(ENCODERS, "dae", "NoSuchEstimator")
    skipped = run_protocol(tiny_clf, db=tmp_path / "d.db", quick=True, plots=False)
    assert set(skipped.skipped_methods) == {"ae", "dae-1"}
    assert sorted(c.method for c in skipped.completed) == ["no-ae-knn", "no-ae-nc"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('estimator = "pixels"', 'estimator = "ae-kmeans"'), "not an encoder name"),
        (('type = "knn"', 'type = "tree"'), "unknown classifier"),
        (("n_neighbors = 3", "k = 3"), "does not accept"),
        (('scheme = "random"', 'scheme = "loo"'), "split scheme"),
        (("stage = 0", "stage = -1"), "stage must be"),
        (('classifiers = ["nc"]', 'classifiers = ["svm"]'), "not \\[classifiers\\] columns"),
        (("grid = { alpha = [0.3, 0.9] }", "grid = { alpha = [] }"), "non-empty lists"),
        (("n_folds = 2", "n_folds = 1"), "n_folds must be"),
        (("n_folds = 2", "folds = 2"), "unknown keys"),
    ],
)
def test_classification_protocol_validation(change, message):
    old, new = change
    text = TINY_CLF + TINY_SELECT
    assert text.count(old) == 1
    validate(tomllib.loads(text), source="t")  # valid as it stands
    with pytest.raises(ProtocolError, match=message):
        validate(tomllib.loads(text.replace(old, new, 1)), source="t")


def test_classifiers_and_splits_are_refused_in_clustering_protocols():
    text = TINY_CLF.replace('kind = "classification"', 'kind = "clustering"')
    with pytest.raises(ProtocolError, match="only for classification"):
        validate(tomllib.loads(text), source="t")


# ---------------------------------------------------------------------------------------------
# Encoder parameters chosen by cross-validation inside the training part
# ---------------------------------------------------------------------------------------------


class NoisyEncoder(TransformerMixin, BaseEstimator):
    """Identity codes plus ``noise`` times a fixed Gaussian draw: the less noise, the better."""

    fits: ClassVar[list] = []  # (n_samples, noise, random_state) of every fit, class-level

    def __init__(self, noise=0.0, random_state=None):
        self.noise = noise
        self.random_state = random_state

    def fit(self, X, y):
        type(self).fits.append((len(X), self.noise, self.random_state))
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=np.float64)
        return X + self.noise * np.random.default_rng(0).normal(size=X.shape)


def test_inner_cv_picks_the_better_candidate_and_refits_on_all_the_data():
    from aeclust.evaluation import InnerCVEncoder

    x, y = _blobs(n_classes=4, per_class=12, dim=6, seed=3)
    NoisyEncoder.fits = []
    enc = InnerCVEncoder(
        NoisyEncoder(), {"noise": [8.0, 0.0]}, classifiers=["nearest-centroid"], random_state=5
    ).fit(x, y)
    assert enc.best_params_ == {"noise": 0.0}  # the second candidate: not just the first
    means = [r["mean_accuracy"] for r in enc.cv_results_]
    assert means[1] > means[0] + 0.2 and [r["params"] for r in enc.cv_results_] == [
        {"noise": 8.0},
        {"noise": 0.0},
    ]
    # 2 candidates x 3 inner folds on 2/3 of the data, then one refit on all 48 samples; the
    # seed goes to every fit
    assert [f[0] for f in NoisyEncoder.fits] == [32] * 6 + [48]
    assert {f[2] for f in NoisyEncoder.fits} == {5}
    assert NoisyEncoder.fits[-1][1] == 0.0 and enc.best_encoder_.noise == 0.0
    assert len(enc.cv_results_[0]["fold_accuracy"]) == 3
    np.testing.assert_allclose(enc.transform(x), x, atol=1e-6)
    # the estimator itself is left unfitted and unchanged (sklearn clone semantics)
    assert enc.encoder.noise == 0.0 and not hasattr(enc.encoder, "n_features_in_")


def test_inner_cv_ties_go_to_the_first_candidate_and_stages_pass_through():
    from aeclust.evaluation import InnerCVEncoder

    x, y = _blobs(n_classes=3, per_class=9, dim=8)
    # the stand-in's codes do not depend on its shift kind, so both candidates score the same
    # and the first one listed must win
    enc = InnerCVEncoder(
        StagedEncoder(n_shifts=2), {"shift": ["class+rival", "class"]}, classifiers=["knn"]
    ).fit(x, y)
    r = enc.cv_results_
    assert r[0]["mean_accuracy"] == r[1]["mean_accuracy"]
    assert enc.best_params_ == {"shift": "class+rival"}
    assert enc.n_stages_ == 3
    np.testing.assert_allclose(enc.transform(x, stage=0), enc.best_encoder_.transform(x, stage=0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"param_grid": {"alpha": [0.1]}}, "does not take"),
        ({"param_grid": {}}, "at least one parameter"),
        ({"param_grid": {"noise": [0.0]}, "n_folds": 1}, "n_folds must be"),
        ({"param_grid": {"noise": [0.0]}, "n_folds": 5}, "at least 5 samples per class"),
        ({"param_grid": {"noise": [0.0]}, "classifiers": "knn"}, "got the string"),
        ({"param_grid": {"noise": [0.0]}, "classifiers": ()}, "at least one classifier is needed"),
    ],
)
def test_inner_cv_rejects_bad_settings(kwargs, message):
    from aeclust.evaluation import InnerCVEncoder

    x, y = _blobs(n_classes=3, per_class=4, dim=5)
    with pytest.raises(ValueError, match=message):
        InnerCVEncoder(NoisyEncoder(), **kwargs).fit(x, y)


def test_bench_chooses_encoder_parameters_by_inner_cv(
    tiny_clf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from aeclust.methods.ccae import ClassSeparatingAE

    path = tmp_path / "sel.toml"
    path.write_text(tiny_clf.read_text() + TINY_SELECT)
    fits = []
    original = ClassSeparatingAE.fit

    def counting_fit(self, X, y=None):
        fits.append((len(X), self.alpha, self.random_state))
        return original(self, X, y)

    monkeypatch.setattr(ClassSeparatingAE, "fit", counting_fit)
    db = tmp_path / "s.db"
    summary = run_protocol(path, db=db, methods=["dae-cv"], quick=True, plots=False)
    assert sorted(c.method for c in summary.completed) == ["dae-cv-knn", "dae-cv-nc"]
    # 2 candidates x 2 inner folds of the 898 training images, then the refit on all of them
    assert [(n, a) for n, a, _ in fits[:4]] == [(449, 0.3), (449, 0.3), (449, 0.9), (449, 0.9)]
    assert len(fits) == 5 and fits[4][0] == 898 and {s for _, _, s in fits} == {0}
    with ResultStore(db) as store:
        run = {r["method"]: r for r in store.runs("tinyclf")}["dae-cv-knn"]
    select = json.loads(run["config_json"])["select"]
    assert select["best_params"]["alpha"] == fits[4][1]
    assert [c["params"] for c in select["cv_mean_accuracy"]] == [{"alpha": 0.3}, {"alpha": 0.9}]
    assert select["grid"] == {"alpha": [0.3, 0.9]} and select["classifiers"] == ["nc"]
    assert len(json.loads(run["history_json"])) == 3  # the refit's stage curve


def test_select_is_refused_in_clustering_protocols_and_checked_against_the_encoder(
    tiny_clf: Path, tmp_path: Path
):
    text = (TINY_CLF + TINY_SELECT).replace('kind = "classification"', 'kind = "clustering"')
    with pytest.raises(ProtocolError, match="select\\] is only for classification"):
        validate(tomllib.loads(text), source="t")
    path = tmp_path / "bad.toml"
    path.write_text(tiny_clf.read_text() + TINY_SELECT.replace("alpha = [", "gamma = ["))
    summary = run_protocol(path, db=tmp_path / "b.db", methods=["dae-cv"], quick=True)
    assert "gamma" in summary.skipped_methods["dae-cv"] and not summary.completed
