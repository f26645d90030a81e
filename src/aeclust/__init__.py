"""aeclust: deep clustering with autoencoders behind one scikit-learn-style API.

Estimators (``fit``, ``predict``, ``transform``, ``fit_predict``, ``save``) and their loader
:func:`load`, the named datasets and the clustering metrics.
"""

__version__ = "0.1.0"

from aeclust.datasets import list_datasets, load_dataset, load_file
from aeclust.methods import (
    CCAE,
    CT,
    DAMIC,
    DCN,
    DEC,
    DKM,
    ICAE,
    IDEC,
    KDAE,
    METHODS,
    N2D,
    VCC,
    AEKMeans,
    BaseDeepClusterer,
    ClassSeparatingAE,
    KMeans,
    load,
    load_metadata,
)
from aeclust.metrics import ari, cluster_accuracy, evaluate, nmi, purity, silhouette

__all__ = [
    "CCAE",
    "CT",
    "DAMIC",
    "DCN",
    "DEC",
    "DKM",
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
    "__version__",
    "ari",
    "cluster_accuracy",
    "evaluate",
    "list_datasets",
    "load",
    "load_dataset",
    "load_file",
    "load_metadata",
    "nmi",
    "purity",
    "silhouette",
]
