"""Clustering methods, one module each, all on :class:`BaseDeepClusterer`."""

from aeclust.methods.base import (
    ESTIMATORS,
    METHODS,
    RUNNER_SETTINGS,
    BaseDeepClusterer,
    build_estimator,
    estimator_params,
    load,
    load_metadata,
    register_estimator,
)
from aeclust.methods.ccae import CCAE, ClassSeparatingAE
from aeclust.methods.ct import CT
from aeclust.methods.dcn import DCN
from aeclust.methods.dec import DEC, IDEC
from aeclust.methods.dkm import DKM
from aeclust.methods.icae import ICAE
from aeclust.methods.kdae import DAMIC, KDAE
from aeclust.methods.kmeans import AEKMeans, KMeans
from aeclust.methods.n2d import N2D
from aeclust.methods.vcc import VCC

__all__ = [
    "CCAE",
    "CT",
    "DAMIC",
    "DCN",
    "DEC",
    "DKM",
    "ESTIMATORS",
    "ICAE",
    "IDEC",
    "KDAE",
    "METHODS",
    "N2D",
    "RUNNER_SETTINGS",
    "VCC",
    "AEKMeans",
    "BaseDeepClusterer",
    "ClassSeparatingAE",
    "KMeans",
    "build_estimator",
    "estimator_params",
    "load",
    "load_metadata",
    "register_estimator",
]
