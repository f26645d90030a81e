"""Train / test splits of the class separating autoencoder paper (Nousi & Tefas, Sec. 5.1).

Both schemes are stratified *per subject* (per class) and seeded:

- ``"kfold"`` (ORL): each class's samples are shuffled and dealt into ``n_folds`` parts; fold
  ``f`` tests on part ``f`` of every class and trains on the rest, so with 10 images per person
  and 5 folds every fold trains on 8 images (80 %) and tests on 2 of each person, and over the
  five folds every image is tested exactly once ("all images serve as training and testing data
  at different runs").
- ``"random"`` (Extended Yale B): each class's samples are shuffled independently and the first
  ``round(train_size * n_c)`` train, the rest test ("half of the images per person are selected
  as training data ... performed five times").

A benchmark *seed* names one split (:func:`split_for_seed`): for ``"kfold"`` seed ``s`` is fold
``s % n_folds`` of the partition shuffled with ``s // n_folds``, so seeds 0..4 are exactly one
five-fold cross-validation; for ``"random"`` seed ``s`` is the split drawn with seed ``s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "SPLIT_SCHEMES",
    "check_split_spec",
    "per_class_kfold",
    "per_class_random_split",
    "split_for_seed",
]

#: Split schemes and their parameters (with defaults).
SPLIT_SCHEMES: dict[str, dict[str, Any]] = {
    "kfold": {"n_folds": 5},
    "random": {"train_size": 0.5},
}


def _check_labels(y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y must be a non-empty 1-D array of class labels, got shape {y.shape}")
    classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    return classes, codes.reshape(-1), counts


def _check_seed(seed: Any, what: str = "random_state") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {seed!r}")
    return int(seed)


def _rank_within_class(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random rank 0..n_c-1 of every sample among the samples of its class (vectorised)."""
    order = np.lexsort((rng.random(codes.size), codes))  # by class, shuffled inside each class
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, codes.size]))
    rank = np.empty(codes.size, dtype=np.int64)
    rank[order] = np.arange(codes.size) - first
    return rank


def per_class_kfold(
    y: Any, n_folds: int = 5, random_state: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold splits dealt per class (the paper's ORL protocol).

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class (subject) labels.
    n_folds : int, default=5
        Number of folds; every class needs at least ``n_folds`` samples.
    random_state : int, default=0
        Seed of the within-class shuffle.

    Returns
    -------
    list of (train_index, test_index)
        ``n_folds`` pairs of sorted index arrays; the test parts partition the samples and each
        class's test count differs by at most one between folds.

    Raises
    ------
    ValueError
        If a class has fewer than ``n_folds`` samples or ``n_folds < 2``.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    classes, codes, counts = _check_labels(y)
    if counts.min() < n_folds:
        small = classes[np.argmin(counts)]
        raise ValueError(
            f"class {small!r} has {counts.min()} sample(s), fewer than n_folds={n_folds}"
        )
    rng = np.random.default_rng(_check_seed(random_state))
    rank = _rank_within_class(codes, rng)
    # Deal each class's shuffled samples round-robin from a random starting fold, so the folds
    # that get one sample more than the others differ between classes.
    offset = rng.integers(0, n_folds, size=classes.size)
    fold = (rank + offset[codes]) % n_folds
    out = []
    for f in range(n_folds):
        test = np.flatnonzero(fold == f)
        out.append((np.flatnonzero(fold != f), test))
    return out


def per_class_random_split(
    y: Any, train_size: float = 0.5, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One random split with ``round(train_size * n_c)`` training samples of every class.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class (subject) labels.
    train_size : float, default=0.5
        Fraction of each class used for training, in (0, 1).
    random_state : int, default=0
        Seed of the split.

    Returns
    -------
    (train_index, test_index)
        Sorted index arrays; every class has at least one sample on each side.

    Raises
    ------
    ValueError
        If ``train_size`` is not in (0, 1) or a class has fewer than two samples.
    """
    if isinstance(train_size, bool) or not isinstance(train_size, (int, float)):
        raise ValueError(f"train_size must be a number in (0, 1), got {train_size!r}")
    if not 0.0 < float(train_size) < 1.0:
        raise ValueError(f"train_size must be in (0, 1), got {train_size!r}")
    classes, codes, counts = _check_labels(y)
    if counts.min() < 2:
        raise ValueError(f"class {classes[np.argmin(counts)]!r} has a single sample: cannot split")
    rng = np.random.default_rng(_check_seed(random_state))
    rank = _rank_within_class(codes, rng)
    n_train = np.clip(np.rint(train_size * counts).astype(np.int64), 1, counts - 1)
    is_train = rank < n_train[codes]
    return np.flatnonzero(is_train), np.flatnonzero(~is_train)


def check_split_spec(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a split specification and fill in its defaults.

    Parameters
    ----------
    spec : mapping or None
        ``{"scheme": "kfold", "n_folds": 5}`` or ``{"scheme": "random", "train_size": 0.5}``;
        None means 5-fold.

    Returns
    -------
    dict
        The complete specification.

    Raises
    ------
    ValueError
        On an unknown scheme or parameter, or a bad value.
    """
    spec = dict(spec or {"scheme": "kfold"})
    scheme = spec.pop("scheme", None)
    if scheme not in SPLIT_SCHEMES:
        raise ValueError(f"split scheme must be one of {sorted(SPLIT_SCHEMES)}, got {scheme!r}")
    defaults = SPLIT_SCHEMES[scheme]
    unknown = sorted(set(spec) - set(defaults))
    if unknown:
        raise ValueError(
            f"split scheme {scheme!r} does not take {unknown}; valid: {sorted(defaults)}"
        )
    out = {"scheme": scheme, **defaults, **spec}
    if scheme == "kfold":
        n = out["n_folds"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n_folds must be an integer >= 2, got {n!r}")
    else:
        t = out["train_size"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < float(t) < 1.0:
            raise ValueError(f"train_size must be a number in (0, 1), got {t!r}")
        out["train_size"] = float(t)
    return out


def split_for_seed(
    y: Any, spec: Mapping[str, Any] | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The split a benchmark seed stands for (see the module docstring).

    Parameters
    ----------
    y : array-like of shape (n_samples,)
    spec : mapping or None
        See :func:`check_split_spec`.
    seed : int
        Non-negative; for ``"kfold"``, fold ``seed % n_folds`` of repetition ``seed // n_folds``.

    Returns
    -------
    (train_index, test_index)
    """
    spec = check_split_spec(spec)
    seed = _check_seed(seed, "seed")
    if spec["scheme"] == "kfold":
        n = spec["n_folds"]
        return per_class_kfold(y, n, random_state=seed // n)[seed % n]
    return per_class_random_split(y, spec["train_size"], random_state=seed)
