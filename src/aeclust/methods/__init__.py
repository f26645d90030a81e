"""Clustering methods, one module each, all on :class:`BaseDeepClusterer`."""

from aeclust.methods.base import (
    ESTIMATORS,
    BaseDeepClusterer,
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
    "ccae": CCAE,
    "icae": ICAE,
    "vcc": VCC,
    "n2d": N2D,
}

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
    "VCC",
    "AEKMeans",
    "BaseDeepClusterer",
    "ClassSeparatingAE",
    "KMeans",
    "load",
    "load_metadata",
    "register_estimator",
]
