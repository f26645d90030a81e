"""The supervised evaluation protocol of the class separating autoencoders (dAE).

P. Nousi, A. Tefas, cluster compacting / class separating autoencoders, Sec. 5.3.2, Tables 4-5
and Figs. 3-4: on each train / test split (:mod:`aeclust.evaluation.splits`) an encoder is fitted
on the training part only (with its labels: the dAE is supervised), both parts are encoded, and
four classifiers (:mod:`aeclust.evaluation.classifiers`) are trained on the training codes and
scored by plain accuracy on the test codes. The inputs compared are the pixels ("No AE"), the
standard AE codes (stage 0 of a dAE fit: the autoencoder before any target shift) and the final
dAE codes; for an encoder with stages (``n_stages_``, ``transform(X, stage=i)``) the accuracy
after every shift is recorded too (the paper's Figs. 3-4).

>>> from aeclust.evaluation import Representation, evaluate           # doctest: +SKIP
>>> from aeclust.methods.ccae import ClassSeparatingAE
>>> dae = ClassSeparatingAE(shift="class+rival")
>>> result = evaluate(X, y, {"no-ae": None, "ae": Representation(dae, stage=0), "dae-2": dae},
...                   split={"scheme": "kfold", "n_folds": 5}, seeds=5)
>>> result.summary()[("dae-2", "svm")]                                  # (mean, std)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

from aeclust.evaluation.classifiers import make_classifier, score_classifiers
from aeclust.evaluation.splits import split_for_seed

__all__ = [
    "ENCODERS",
    "PAPER_CLASSIFIERS",
    "EvaluationResult",
    "Representation",
    "SplitResult",
    "encoder_class",
    "evaluate",
    "evaluate_split",
]

#: Encoders a benchmark protocol may name: ``"pixels"`` (no encoder: the input itself) and the
#: class separating autoencoder, by its name in the estimator registry
#: (:data:`aeclust.methods.ESTIMATORS`).
ENCODERS: dict[str, str | None] = {
    "pixels": None,
    "dae": "ClassSeparatingAE",
}

#: The paper's four classifiers, as :func:`make_classifier` kinds.
PAPER_CLASSIFIERS: dict[str, str] = {
    "mlp": "softmax",
    "nc": "nearest-centroid",
    "knn": "knn",
    "svm": "svm",
}


def encoder_class(name: str) -> type | None:
    """The estimator class of an :data:`ENCODERS` name (None for ``"pixels"``).

    Raises
    ------
    ValueError
        On an unknown name.
    LookupError
        If the name's estimator is not in the registry.
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; valid: {', '.join(sorted(ENCODERS))}")
    target = ENCODERS[name]
    if target is None:
        return None
    from aeclust.methods import ESTIMATORS  # the library, under the harness

    if target not in ESTIMATORS:
        raise LookupError(f"{target} is not a registered estimator")
    return ESTIMATORS[target]


@dataclass(frozen=True)
class Representation:
    """What the classifiers see: the input itself, or an encoder's codes.

    Parameters
    ----------
    encoder : estimator or None
        Unfitted; ``fit(X, y)`` then ``transform(X)`` (or ``transform(X, stage=...)``). None: the
        input features. Representations holding the *same* encoder object share one fit per split
        (the standard AE codes are stage 0 of the dAE fit).
    stage : int or None
        ``transform(X, stage=stage)``; None: the final codes.
    """

    encoder: BaseEstimator | None = None
    stage: int | None = None


def _as_representation(value: Any, name: str) -> Representation:
    if value is None:
        return Representation()
    if isinstance(value, Representation):
        rep = value
    elif hasattr(value, "fit") and hasattr(value, "transform"):
        rep = Representation(value)
    else:
        raise TypeError(
            f"representation {name!r} must be None, an estimator with fit/transform or a "
            f"Representation, got {type(value).__name__}"
        )
    if rep.stage is not None and (
        isinstance(rep.stage, bool) or not isinstance(rep.stage, (int, np.integer)) or rep.stage < 0
    ):
        raise ValueError(f"representation {name!r}: stage must be a non-negative int or None")
    if rep.encoder is None and rep.stage is not None:
        raise ValueError(f"representation {name!r}: a stage needs an encoder")
    return rep


@dataclass
class SplitResult:
    """Accuracies of every (representation, classifier) pair on one split.

    Attributes
    ----------
    seed : int
        The split's seed (also the encoders' ``random_state``).
    train_index, test_index : ndarray
    accuracy : dict
        ``(representation, classifier)`` -> test accuracy.
    predictions : dict
        ``(representation, classifier)`` -> predicted test labels.
    stage_accuracy : dict
        ``(representation, classifier)`` -> accuracy after each stage ``0..n_stages_-1``, for the
        representations that take an encoder's final codes and whose encoder has stages.
    fit_seconds : dict
        Representation -> wall time of its encoder's fit (shared fits report the same time; 0
        for the input features).
    eval_seconds : dict
        ``(representation, classifier)`` -> wall time of encoding + classifying (stages included).
    encoders : dict
        Representation -> its fitted encoder (shared fits: the same object); absent for the input.
    """

    seed: int
    train_index: np.ndarray
    test_index: np.ndarray
    accuracy: dict[tuple[str, str], float] = field(default_factory=dict)
    predictions: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    stage_accuracy: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    fit_seconds: dict[str, float] = field(default_factory=dict)
    eval_seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    encoders: dict[str, Any] = field(default_factory=dict)


def _check_xy(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},), got {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError("X contains NaN or infinity")
    return x, y


def _classifiers(classifiers: Mapping[str, Any] | None) -> dict[str, BaseEstimator]:
    if classifiers is None:
        return {name: make_classifier(kind) for name, kind in PAPER_CLASSIFIERS.items()}
    out = {}
    for name, clf in classifiers.items():
        out[name] = make_classifier(clf) if isinstance(clf, str) else clf
    if not out:
        raise ValueError("at least one classifier is needed")
    return out


def evaluate_split(
    x: Any,
    y: Any,
    train_index: np.ndarray,
    test_index: np.ndarray,
    representations: Mapping[str, Any],
    classifiers: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    stages: bool = True,
) -> SplitResult:
    """Fit the encoders on one training part and score every classifier on the test part.

    Parameters
    ----------
    x : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    train_index, test_index : array of int
        The split; the encoders and classifiers see only ``x[train_index]`` and its labels.
    representations : mapping
        Name -> None (the input), an unfitted encoder, or a :class:`Representation`.
    classifiers : mapping, optional
        Name -> kind (see :func:`make_classifier`) or unfitted estimator; default the paper's
        four (:data:`PAPER_CLASSIFIERS`).
    seed : int, default=0
        Set as ``random_state`` of every encoder that has one.
    stages : bool, default=True
        Also score the codes after every stage (for encoders with ``n_stages_``).

    Returns
    -------
    SplitResult
    """
    x, y = _check_xy(x, y)
    train_index = np.asarray(train_index, dtype=np.int64)
    test_index = np.asarray(test_index, dtype=np.int64)
    if np.intersect1d(train_index, test_index).size:
        raise ValueError("train_index and test_index overlap")
    reps = {name: _as_representation(v, name) for name, v in representations.items()}
    clfs = _classifiers(classifiers)
    result = SplitResult(int(seed), train_index, test_index)
    x_tr, y_tr, x_te, y_te = x[train_index], y[train_index], x[test_index], y[test_index]

    fitted: dict[int, tuple[Any, float]] = {}  # id(encoder) -> (fitted clone, seconds)
    preds: dict[tuple[int, int | None, str], tuple[np.ndarray, float]] = {}

    def encoder_for(rep: Representation) -> tuple[Any, float]:
        key = id(rep.encoder)
        if key not in fitted:
            enc = clone(rep.encoder)
            if "random_state" in enc.get_params():
                enc.set_params(random_state=int(seed))
            t0 = time.perf_counter()
            enc.fit(x_tr, y_tr)  # the training fold only
            fitted[key] = (enc, time.perf_counter() - t0)
        return fitted[key]

    def predict(rep: Representation, stage: int | None) -> dict[str, np.ndarray]:
        """Predictions of every classifier on one (fit, stage), each computed once."""
        key = (id(rep.encoder), stage)
        missing = [c for c in clfs if (*key, c) not in preds]
        if missing:
            t0 = time.perf_counter()
            if rep.encoder is None:
                c_tr, c_te = x_tr, x_te
            else:
                enc, _ = encoder_for(rep)
                kw = {} if stage is None else {"stage": stage}
                c_tr, c_te = enc.transform(x_tr, **kw), enc.transform(x_te, **kw)
            encode_s = time.perf_counter() - t0
            for c in missing:
                t0 = time.perf_counter()
                p = score_classifiers({c: clfs[c]}, c_tr, y_tr, c_te, y_te)[c]
                preds[(*key, c)] = (p, encode_s / len(missing) + time.perf_counter() - t0)
        return {c: preds[(*key, c)][0] for c in clfs}

    for name, rep in reps.items():
        t_rep = {c: 0.0 for c in clfs}
        final = predict(rep, rep.stage)
        for c, p in final.items():
            result.accuracy[(name, c)] = float(np.mean(p == y_te))
            result.predictions[(name, c)] = p
            t_rep[c] += preds[(id(rep.encoder), rep.stage, c)][1]
        if rep.encoder is None:
            result.fit_seconds[name] = 0.0
        else:
            enc, fit_s = encoder_for(rep)
            result.fit_seconds[name] = fit_s
            result.encoders[name] = enc
            n_stages = getattr(enc, "n_stages_", None)
            if stages and rep.stage is None and n_stages:
                curves: dict[str, list[float]] = {c: [] for c in clfs}
                for s in range(int(n_stages)):
                    for c, p in predict(rep, s).items():
                        curves[c].append(float(np.mean(p == y_te)))
                        t_rep[c] += preds[(id(rep.encoder), s, c)][1]
                for c in clfs:
                    result.stage_accuracy[(name, c)] = curves[c]
        for c in clfs:
            result.eval_seconds[(name, c)] = t_rep[c]
    return result


@dataclass
class EvaluationResult:
    """The results of :func:`evaluate`: one :class:`SplitResult` per seed."""

    splits: list[SplitResult]

    def summary(self) -> dict[tuple[str, str], tuple[float, float]]:
        """``(representation, classifier)`` -> (mean, sample std) of the test accuracy."""
        keys = self.splits[0].accuracy if self.splits else {}
        out = {}
        for key in keys:
            vals = np.array([s.accuracy[key] for s in self.splits])
            std = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
            out[key] = (float(vals.mean()), std)
        return out

    def stage_summary(self) -> dict[tuple[str, str], np.ndarray]:
        """``(representation, classifier)`` -> mean accuracy after each stage (Figs. 3-4)."""
        keys = self.splits[0].stage_accuracy if self.splits else {}
        return {k: np.mean([s.stage_accuracy[k] for s in self.splits], axis=0) for k in keys}


def evaluate(
    x: Any,
    y: Any,
    representations: Mapping[str, Any],
    classifiers: Mapping[str, Any] | None = None,
    *,
    split: Mapping[str, Any] | None = None,
    seeds: int | Sequence[int] = 5,
    stages: bool = True,
) -> EvaluationResult:
    """Run the paper's protocol over several splits.

    Parameters
    ----------
    x, y : array-like
        Features (e.g. pixels in [0, 1]) and class labels.
    representations, classifiers, stages
        See :func:`evaluate_split`.
    split : mapping, optional
        See :func:`aeclust.evaluation.check_split_spec`; default 5-fold per class (ORL). Use
        ``{"scheme": "random", "train_size": 0.5}`` for Extended Yale B.
    seeds : int or sequence of int, default=5
        The splits (``range(seeds)`` for an int; with 5-fold, seeds 0-4 are one full
        cross-validation). Each seed is also the encoders' ``random_state``.

    Returns
    -------
    EvaluationResult
    """
    x, y = _check_xy(x, y)
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be a positive integer, got {seeds}")
        seed_list = list(range(int(seeds)))
    else:
        seed_list = [int(s) for s in seeds]
    out = []
    for s in seed_list:
        train, test = split_for_seed(y, split, s)
        out.append(
            evaluate_split(x, y, train, test, representations, classifiers, seed=s, stages=stages)
        )
    return EvaluationResult(out)
