"""Gaussian mixtures on an embedding: fitted once, saved as arrays, rebuilt after ``load``.

Used by N2D (its third stage, a full-covariance mixture on the UMAP manifold) and by VCC's
``assignment="mixture"`` variant. Both keep only the mixture's parameters in the model file
(arrays, so ``aeclust.save`` does not pickle a scikit-learn object) and rebuild the predictor
from them on first use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.mixture import GaussianMixture

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@dataclass(frozen=True)
class MixtureParameters:
    """What defines a fitted mixture's predictions: weights, means, covariances, their type."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    covariance_type: str
    n_iter: int = 0


def fit_gaussian_mixture(
    points: np.ndarray,
    n_components: int,
    *,
    covariance_type: str = "full",
    n_init: int = 10,
    seed: int = 0,
) -> tuple[GaussianMixture, MixtureParameters]:
    """Fit a Gaussian mixture by EM from ``n_init`` starts; the most likely fit is kept.

    Keeping the start of highest likelihood uses no labels. The fit runs in float64, so that
    the saved parameters rebuild the same predictor (:func:`rebuild_gaussian_mixture`).

    Returns
    -------
    mixture : sklearn.mixture.GaussianMixture
        The fitted predictor.
    parameters : MixtureParameters
        Its parameters as arrays, for the model file.
    """
    mixture = GaussianMixture(
        n_components=n_components,
        covariance_type=covariance_type,
        n_init=n_init,
        random_state=seed,
    ).fit(np.asarray(points, dtype=np.float64))
    parameters = MixtureParameters(
        weights=mixture.weights_,
        means=mixture.means_,
        covariances=mixture.covariances_,
        covariance_type=covariance_type,
        n_iter=int(mixture.n_iter_),
    )
    return mixture, parameters


def rebuild_gaussian_mixture(parameters: MixtureParameters) -> GaussianMixture:
    """A predictor equal to the fitted one, from its saved parameters."""
    from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

    mixture = GaussianMixture(
        n_components=len(parameters.weights), covariance_type=parameters.covariance_type
    )
    mixture.weights_ = np.asarray(parameters.weights, dtype=np.float64)
    mixture.means_ = np.asarray(parameters.means, dtype=np.float64)
    mixture.covariances_ = np.asarray(parameters.covariances, dtype=np.float64)
    mixture.precisions_cholesky_ = _compute_precision_cholesky(
        mixture.covariances_, parameters.covariance_type
    )
    return mixture
