"""Hyper-parameters of a supervised encoder chosen by cross-validation inside the training part.

The class separating autoencoders (Nousi & Tefas, Sec. 4, after Algorithm 2) are supervised, and
the paper says that with labels "larger values [of alpha and beta] can be used safely" but gives
no value. Choosing them on the test part would be tuning on the test labels; choosing them by a
cross-validation *inside* each training part is the ordinary supervised procedure and leaves the
outer protocol (:mod:`aeclust.evaluation.protocol`) untouched: :class:`InnerCVEncoder` is itself
an encoder with ``fit(X, y)`` / ``transform(X)``, and the outer split only ever hands it the
training part.

>>> from aeclust.evaluation.selection import InnerCVEncoder          # doctest: +SKIP
>>> from aeclust.methods.ccae import ClassSeparatingAE
>>> enc = InnerCVEncoder(ClassSeparatingAE(shift="class+rival"), {"alpha": [0.3, 0.6, 0.9]})
>>> enc.fit(x_train, y_train).best_params_
{'alpha': 0.6}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.model_selection import ParameterGrid
from sklearn.utils.validation import check_is_fitted

from aeclust.evaluation.classifiers import score_classifiers
from aeclust.evaluation.protocol import _check_xy, _classifiers
from aeclust.evaluation.splits import per_class_kfold

__all__ = ["InnerCVEncoder"]


class InnerCVEncoder(TransformerMixin, BaseEstimator):
    """An encoder whose hyper-parameters are picked by per-class k-fold CV on its training data.

    For every candidate of ``param_grid`` and every inner fold (dealt per class, as the ORL
    protocol, :func:`aeclust.evaluation.per_class_kfold`), a clone of ``encoder`` with those
    parameters is fitted on the inner training part, both inner parts are encoded, and each of
    ``classifiers`` is trained on the inner training codes and scored by accuracy on the inner
    validation codes. The candidate with the highest mean accuracy (over folds and classifiers;
    ties go to the earlier candidate of the grid) is refitted on all the data it was given.

    Parameters
    ----------
    encoder : estimator
        Unfitted supervised encoder (``fit(X, y)``, ``transform(X)``); never modified.
    param_grid : mapping or sequence of mappings
        Candidate parameters of ``encoder``, as :class:`sklearn.model_selection.ParameterGrid`.
    classifiers : sequence or mapping, default=("softmax", "nearest-centroid", "knn", "svm")
        What scores a candidate: :func:`aeclust.evaluation.make_classifier` kinds, or a mapping
        name -> kind or unfitted estimator (e.g. the protocol's own columns).
    n_folds : int, default=3
        Inner folds; every class needs at least ``n_folds`` samples.
    random_state : int or None, default=None
        Seeds the inner folds and is set as the ``random_state`` of every encoder fit (the
        outer protocol sets it to the split's seed).

    Attributes
    ----------
    best_params_ : dict
        The chosen candidate.
    best_encoder_ : estimator
        ``encoder`` with ``best_params_``, fitted on all of ``X``.
    cv_results_ : list of dict
        Per candidate: ``params``, ``mean_accuracy``, ``std_accuracy`` (over folds, of the
        classifier mean), ``fold_accuracy`` (fold -> classifier -> accuracy).
    n_stages_ : int
        Present when the best encoder has stages (``transform(X, stage=...)``).
    history_ : list
        The best encoder's ``history_``, when it has one.
    """

    def __init__(
        self,
        encoder: BaseEstimator | None = None,
        param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]] = (),
        classifiers: Sequence[str] | Mapping[str, Any] = (
            "softmax",
            "nearest-centroid",
            "knn",
            "svm",
        ),
        n_folds: int = 3,
        random_state: int | None = None,
    ) -> None:
        self.encoder = encoder
        self.param_grid = param_grid
        self.classifiers = classifiers
        self.n_folds = n_folds
        self.random_state = random_state

    def _classifier_map(self) -> dict[str, BaseEstimator]:
        clfs = self.classifiers
        if isinstance(clfs, str):
            raise ValueError(
                f"classifiers must be a sequence of kinds or a mapping, got the string {clfs!r}"
            )
        if not isinstance(clfs, Mapping):
            clfs = {str(kind): kind for kind in clfs}
        return _classifiers(clfs)  # the protocol's: kinds built by make_classifier, none empty

    def _candidates(self) -> list[dict[str, Any]]:
        if self.encoder is None or not hasattr(self.encoder, "fit"):
            raise ValueError("encoder must be an unfitted estimator with fit(X, y)/transform(X)")
        try:
            grid = list(ParameterGrid(self.param_grid))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid param_grid {self.param_grid!r}: {exc}") from None
        if not grid or grid == [{}]:
            raise ValueError("param_grid must give at least one parameter with candidates")
        valid = set(self.encoder.get_params())
        unknown = sorted({k for cand in grid for k in cand} - valid)
        if unknown:
            raise ValueError(
                f"param_grid names {unknown}, which {type(self.encoder).__name__} does not take"
            )
        return grid

    def _fit_one(self, params: Mapping[str, Any], x: np.ndarray, y: np.ndarray) -> Any:
        enc = clone(self.encoder).set_params(**params)
        if self.random_state is not None and "random_state" in enc.get_params():
            enc.set_params(random_state=int(self.random_state))
        return enc.fit(x, y)

    def fit(self, X: Any, y: Any) -> InnerCVEncoder:
        """Cross-validate every candidate on (X, y), then refit the best on all of it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self
        """
        x, y = _check_xy(X, y)
        if isinstance(self.n_folds, bool) or not isinstance(self.n_folds, (int, np.integer)):
            raise ValueError(f"n_folds must be an integer >= 2, got {self.n_folds!r}")
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be an integer >= 2, got {self.n_folds!r}")
        grid = self._candidates()
        clfs = self._classifier_map()
        _, counts = np.unique(y, return_counts=True)
        if counts.min() < self.n_folds:
            raise ValueError(
                f"inner {self.n_folds}-fold CV needs at least {self.n_folds} samples per class; "
                f"the smallest class has {counts.min()}"
            )
        seed = 0 if self.random_state is None else int(self.random_state)
        folds = per_class_kfold(y, n_folds=int(self.n_folds), random_state=seed)
        results = []
        for params in grid:
            per_fold = []
            for tr, va in folds:
                enc = self._fit_one(params, x[tr], y[tr])
                pred = score_classifiers(
                    clfs, enc.transform(x[tr]), y[tr], enc.transform(x[va]), y[va]
                )
                per_fold.append({c: float(np.mean(p == y[va])) for c, p in pred.items()})
            fold_means = np.array([np.mean(list(f.values())) for f in per_fold])
            results.append(
                {
                    "params": dict(params),
                    "mean_accuracy": float(fold_means.mean()),
                    "std_accuracy": float(fold_means.std()),
                    "fold_accuracy": per_fold,
                }
            )
        best = int(np.argmax([r["mean_accuracy"] for r in results]))  # first of equal means
        self.cv_results_ = results
        self.best_params_ = dict(grid[best])
        self.best_encoder_ = self._fit_one(self.best_params_, x, y)
        n_stages = getattr(self.best_encoder_, "n_stages_", None)
        if n_stages is not None:
            self.n_stages_ = n_stages
        if hasattr(self.best_encoder_, "history_"):
            self.history_ = self.best_encoder_.history_
        return self

    def transform(self, X: Any, **kwargs: Any) -> np.ndarray:
        """Codes of the refitted best encoder (``stage=`` is passed through).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        **kwargs
            Passed to the best encoder's ``transform`` (e.g. ``stage``).

        Returns
        -------
        ndarray of shape (n_samples, n_components)
        """
        check_is_fitted(self, "best_encoder_")
        return self.best_encoder_.transform(X, **kwargs)
