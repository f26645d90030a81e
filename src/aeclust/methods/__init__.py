"""Clustering methods, one module each, all on :class:`BaseDeepClusterer`."""

from aeclust.methods.base import ESTIMATORS, BaseDeepClusterer, load, register_estimator
from aeclust.methods.ct import CT
from aeclust.methods.dcn import DCN
from aeclust.methods.dec import DEC, IDEC
from aeclust.methods.dkm import DKM
from aeclust.methods.kdae import DAMIC, KDAE
from aeclust.methods.kmeans import AEKMeans, KMeans

#: Command-line names of the methods (DESIGN.md: the class names lower-cased).
METHODS: dict[str, type[BaseDeepClusterer]] = {
    "kmeans": KMeans,
    "ae-kmeans": AEKMeans,
    "dec": DEC,
    "idec": IDEC,
    "dcn": DCN,
    "dkm": DKM,
    "kdae": KDAE,
    "damic": DAMIC,
    "ct": CT,
}

__all__ = [
    "CT",
    "DAMIC",
    "DCN",
    "DEC",
    "DKM",
    "ESTIMATORS",
    "IDEC",
    "KDAE",
    "METHODS",
    "AEKMeans",
    "BaseDeepClusterer",
    "KMeans",
    "load",
    "register_estimator",
]
