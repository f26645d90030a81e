"""The four classifiers of the class separating autoencoder paper (Nousi & Tefas, Sec. 3.3).

=====================  ==========================================================================
``"softmax"``          The "MLP without hidden layers" (Eqs. 4-5): one linear layer with a softmax
                       output trained on the categorical cross-entropy, i.e. multinomial logistic
                       regression (:class:`sklearn.linear_model.LogisticRegression`, L-BFGS, full
                       batch). sklearn rather than a torch layer (``aeclust.nn.MLPClassifier``)
                       because it solves the same convex problem to convergence deterministically
                       in well under a second at these sizes, with no epochs or learning rate to
                       invent; the paper gives neither.
``"nearest-centroid"`` :class:`sklearn.neighbors.NearestCentroid` (Euclidean).
``"knn"``              :class:`sklearn.neighbors.KNeighborsClassifier` (Euclidean, majority vote).
``"svm"``              :class:`sklearn.svm.SVC` with the RBF kernel.
=====================  ==========================================================================

The paper states none of the classifiers' hyper-parameters (k, C, gamma, regularisation) nor any
feature scaling; :data:`DEFAULT_PARAMS` holds our choices (scikit-learn's defaults, see
``docs/METHODS.md``) and every one can be overridden by name.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

__all__ = ["CLASSIFIERS", "DEFAULT_PARAMS", "make_classifier", "score_classifiers"]

#: Classifier kinds -> scikit-learn class.
CLASSIFIERS: dict[str, type[BaseEstimator]] = {
    "softmax": LogisticRegression,
    "nearest-centroid": NearestCentroid,
    "knn": KNeighborsClassifier,
    "svm": SVC,
}

#: Our settings where the paper gives none (overridable per protocol).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    # multinomial for more than two classes with lbfgs; the default C = 1 L2 penalty keeps the
    # problem well posed on the separable pixel data (1,024 features, 320 training images)
    "softmax": {"C": 1.0, "max_iter": 2000},
    "nearest-centroid": {},
    "knn": {"n_neighbors": 5},
    "svm": {"kernel": "rbf", "C": 1.0, "gamma": "scale"},
}


def make_classifier(
    kind: str, params: Mapping[str, Any] | None = None, *, standardize: bool = False
) -> BaseEstimator:
    """Build one of the paper's classifiers.

    Parameters
    ----------
    kind : {"softmax", "nearest-centroid", "knn", "svm"}
    params : mapping, optional
        Constructor arguments overriding :data:`DEFAULT_PARAMS` (e.g. ``{"n_neighbors": 1}``).
    standardize : bool, default=False
        Put a :class:`~sklearn.preprocessing.StandardScaler` (fitted on the training codes) in
        front of the classifier. The paper does not say it standardises; off by default.

    Returns
    -------
    sklearn estimator
        Unfitted; deterministic (none of the four draws random numbers once built).

    Raises
    ------
    ValueError
        On an unknown kind or parameter name.
    """
    if kind not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {kind!r}; valid: {', '.join(sorted(CLASSIFIERS))}")
    cls = CLASSIFIERS[kind]
    merged = {**DEFAULT_PARAMS[kind], **dict(params or {})}
    valid = cls().get_params()
    unknown = sorted(set(merged) - set(valid))
    if unknown:
        raise ValueError(
            f"classifier {kind!r} ({cls.__name__}) does not accept {unknown}; "
            f"valid: {', '.join(sorted(valid))}"
        )
    if kind == "svm" and merged.get("kernel") != "rbf":
        raise ValueError(f"the paper's SVM uses the RBF kernel, got kernel={merged['kernel']!r}")
    est = cls(**merged)
    return make_pipeline(StandardScaler(), est) if standardize else est


def score_classifiers(
    classifiers: Mapping[str, BaseEstimator],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> dict[str, np.ndarray]:
    """Fit every classifier on the training codes and predict the test codes.

    Parameters
    ----------
    classifiers : mapping
        Name -> unfitted estimator (cloned, never modified).
    x_train, y_train, x_test, y_test : arrays
        Codes (n, d) as float and labels.

    Returns
    -------
    dict
        Name -> predicted test labels.
    """
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"train and test codes must be 2-D with the same width, got {x_train.shape} "
            f"and {x_test.shape}"
        )
    if not (np.isfinite(x_train).all() and np.isfinite(x_test).all()):
        raise ValueError("the codes contain NaN or infinity")
    out = {}
    for name, est in classifiers.items():
        with warnings.catch_warnings():
            # NearestCentroid warns about pixels constant within a class; that statistic is only
            # used by its shrink_threshold option, which we do not set
            warnings.filterwarnings(
                "ignore", message=".*within_class_std_dev_", category=UserWarning
            )
            model = clone(est).fit(x_train, y_train)
        out[name] = np.asarray(model.predict(x_test))
    return out
