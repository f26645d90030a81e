"""Registry of the named benchmark data sets: metadata, sources, checksums, loading and caching.

Each data set (except the embedded ``digits``) is one ``<data_home>/<file>.npz`` in the npz format
(see :mod:`aeclust.datasets.readers`). When the file is absent it is downloaded from the data
set's canonical public source, every raw file verified by sha256 (or, where no published sha256 is
known, the converted content verified against the sha256 of the reference copy), converted and
written atomically.
"""

from __future__ import annotations

import difflib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import converters
from .base import Dataset, apply_scaling, check_scale, scaling_for
from .converters import Converter
from .download import (
    ChecksumError,
    DownloadError,
    RemoteFile,
    atomic_savez,
    content_sha256,
    download_file,
)
from .readers import NPZ_FORMAT, check_manifest_arrays, flatten_images, read_manifest_npz

logger = logging.getLogger(__name__)

ENV_VAR = "AECLUST_DATA"
DEFAULT_DATA_HOME = Path("~/.cache/aeclust")


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata and source of one named data set.

    Parameters
    ----------
    name : str
        Registry name (``load_dataset(name)``).
    file : str or None
        Stem of the npz file in the data home (several names may share one file, e.g. ``mnist``
        and ``mnist_test``); None for the embedded ``digits``.
    n_samples : int
        Number of samples after selecting ``split_value``.
    n_classes : int
        Number of classes.
    image_shape : tuple of int or None
        (C, H, W) of one image, None for feature vectors.
    n_features : int
        Features per sample.
    description : str
        One line on what the data is.
    origin : str
        The canonical source (URLs or where to get the file).
    reference : str
        The paper or report to cite.
    split_value : int or None, default=None
        Keep only rows whose ``split`` equals this (1 = the official test set); None keeps all.
    remote : tuple of RemoteFile, default=()
        Raw files of the canonical source; empty when the data set cannot be downloaded.
    converter : callable or None, default=None
        Turns the raw files into the npz arrays.
    content_sha256 : str or None, default=None
        sha256 of the converted ``x`` (uint8, as stored) bytes followed by the ``y`` (int64)
        bytes, computed from the reference copy.
    kind : {"image", "features", "builtin"}, default="image"
        ``"features"``: ``x`` is stored as float (N, D) and never rescaled.
    """

    name: str
    file: str | None
    n_samples: int
    n_classes: int
    image_shape: tuple[int, int, int] | None
    n_features: int
    description: str
    origin: str
    reference: str
    split_value: int | None = None
    remote: tuple[RemoteFile, ...] = field(default=(), repr=False)
    converter: Converter | None = field(default=None, repr=False)
    content_sha256: str | None = None
    kind: str = "image"

    @property
    def stored_sample_shape(self) -> tuple[int, ...]:
        """tuple of int : Shape of one sample in the npz file ((H, W), (H, W, C) or (D,))."""
        if self.image_shape is None:
            return (self.n_features,)
        c, h, w = self.image_shape
        return (h, w) if c == 1 else (h, w, c)

    @property
    def downloadable(self) -> bool:
        """bool : Whether the data set has a canonical source to download from."""
        return bool(self.remote) and self.converter is not None


# --------------------------------------------------------------------------- sources

# The original host (yann.lecun.com) is often unavailable now; its files are served unchanged by
# the TensorFlow (cvdf) and PyTorch (ossci) mirrors, which are tried first. The sha256 decides.
_MNIST_HOSTS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# sha256 of the IDX files: tensorflow/datasets, tensorflow_datasets/url_checksums/mnist.txt.
_MNIST_FILES = {
    "train_images": (
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "train_labels": (
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "test_images": (
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "test_labels": (
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}
_FASHION_HOSTS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
# sha256 of the IDX files: tensorflow/datasets, tensorflow_datasets/url_checksums/fashion_mnist.txt.
_FASHION_FILES = {
    "train_images": (
        "train-images-idx3-ubyte.gz",
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    ),
    "train_labels": (
        "train-labels-idx1-ubyte.gz",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    ),
    "test_images": (
        "t10k-images-idx3-ubyte.gz",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    ),
    "test_labels": (
        "t10k-labels-idx1-ubyte.gz",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ),
}


def _idx_remote(
    hosts: tuple[str, ...], files: dict[str, tuple[str, str]]
) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(key, fname, tuple(h + fname for h in hosts), sha)
        for key, (fname, sha) in files.items()
    )


_ESL = "https://hastie.su.domains/ElemStatLearn/datasets/"
_ESL_MIRROR = (
    "https://raw.githubusercontent.com/tdhock/2023-08-deep-learning/"
    "27722edd4db50ad840a2c16bd16e1b9ca608ce4b/data/"
)
_CAVE = "https://www.cs.columbia.edu/CAVE/databases/SLAM_coil-20_coil-100/"
_CAVE_OLD = "https://cave.cs.columbia.edu/old/databases/SLAM_coil-20_coil-100/"
_DSC = (
    "https://raw.githubusercontent.com/panji530/Deep-subspace-clustering-networks/"
    "4aa83542b8832c2b4586a53aee2c351bc8faf5c0/Data/"
)
_CNN_SPARSE = (
    "https://raw.githubusercontent.com/tansyab1/CNN-Sparse/"
    "c52b9c2c783bf6e350b11962781b7c2d701ce2c4/data/"
)
_PCPSNMF = (
    "https://raw.githubusercontent.com/louloupiano/PCPSNMF/"
    "ba49a412f48e5f1e4c2d1462b21a1ec6e5bf608a/"
)

_MNIST_REF = (
    "Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, Gradient-based learning applied to document "
    "recognition, Proc. IEEE 86(11), 1998"
)
_FASHION_REF = (
    "H. Xiao, K. Rasul, R. Vollgraf, Fashion-MNIST: a Novel Image Dataset for Benchmarking "
    "Machine Learning Algorithms, arXiv:1708.07747, 2017"
)
_COIL_REF = "S. A. Nene, S. K. Nayar, H. Murase, Columbia Object Image Library, Tech. Rep. {}, 1996"
_CAI = "; 32x32 version by D. Cai (Orthogonal Laplacianfaces for face recognition, IEEE TIP 2006)"

_MNIST = DatasetInfo(
    name="mnist",
    file="mnist",
    n_samples=70000,
    n_classes=10,
    image_shape=(1, 28, 28),
    n_features=784,
    description="MNIST handwritten digits, 60,000 train + 10,000 test, 28x28 grey",
    origin="the IDX files of yann.lecun.com/exdb/mnist, via storage.googleapis.com/cvdf-datasets/"
    "mnist, ossci-datasets.s3.amazonaws.com/mnist or the original host",
    reference=_MNIST_REF,
    remote=_idx_remote(_MNIST_HOSTS, _MNIST_FILES),
    converter=converters.convert_idx,
    content_sha256="b3fe36794a3a345d09632e9d79f122d61ca91a07e5a22f8536973655bacf2a78",
)
_FASHION = DatasetInfo(
    name="fashion_mnist",
    file="fashion_mnist",
    n_samples=70000,
    n_classes=10,
    image_shape=(1, 28, 28),
    n_features=784,
    description="Fashion-MNIST Zalando article images, 60,000 train + 10,000 test, 28x28 grey",
    origin="IDX files from fashion-mnist.s3-website.eu-central-1.amazonaws.com (mirror: GitHub "
    "zalandoresearch/fashion-mnist data/fashion)",
    reference=_FASHION_REF,
    remote=_idx_remote(_FASHION_HOSTS, _FASHION_FILES),
    converter=converters.convert_idx,
    content_sha256="75979490032625d6583ff7101de6f9243d07d0a8d33d3c9b3b7e79b4c59382af",
)


def _single(key: str, fname: str, urls: tuple[str, ...], sha: str | None) -> tuple[RemoteFile]:
    return (RemoteFile(key, fname, urls, sha),)


_REGISTRY: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        name="digits",
        file=None,
        n_samples=1797,
        n_classes=10,
        image_shape=(1, 8, 8),
        n_features=64,
        description="UCI optical handwritten digits (scikit-learn load_digits), 8x8, values 0..16",
        origin="embedded in scikit-learn (sklearn.datasets.load_digits)",
        reference="E. Alpaydin, C. Kaynak, Optical Recognition of Handwritten Digits, UCI, 1998",
        kind="builtin",
    ),
    _MNIST,
    DatasetInfo(
        name="mnist_test",
        file="mnist",
        n_samples=10000,
        n_classes=10,
        image_shape=(1, 28, 28),
        n_features=784,
        description="the MNIST official test set (t10k), rows of mnist.npz with split == 1",
        origin=_MNIST.origin,
        reference=_MNIST_REF,
        split_value=1,
    ),
    _FASHION,
    DatasetInfo(
        name="fashion_test",
        file="fashion_mnist",
        n_samples=10000,
        n_classes=10,
        image_shape=(1, 28, 28),
        n_features=784,
        description="the Fashion-MNIST test set, rows of fashion_mnist.npz with split == 1",
        origin=_FASHION.origin,
        reference=_FASHION_REF,
        split_value=1,
    ),
    DatasetInfo(
        name="usps",
        file="usps",
        n_samples=9298,
        n_classes=10,
        image_shape=(1, 16, 16),
        n_features=256,
        description="USPS handwritten digits (ESL 'ZIP code' data), 7,291 train + 2,007 test, "
        "16x16; stored as round((v + 1) * 127.5) from [-1, 1]",
        origin=f"{_ESL}zip.train.gz and zip.test.gz (The Elements of Statistical Learning)",
        reference="J. J. Hull, A database for handwritten text recognition research, IEEE TPAMI "
        "16(5), 1994",
        remote=(
            RemoteFile(
                "train",
                "zip.train.gz",
                (_ESL + "zip.train.gz", _ESL_MIRROR + "zip.train.gz"),
                "66ebf231ab51f2cf6ac1a892d0f98ccffee1079d7a5db638c1f11f366046ca16",
            ),
            RemoteFile(
                "test",
                "zip.test.gz",
                (_ESL + "zip.test.gz", _ESL_MIRROR + "zip.test.gz"),
                "8dacc3c6e136af6c3488de9e5113a7daf140c8c2f1f0b61c54ee02f03f1a962f",
            ),
        ),
        converter=converters.convert_usps,
        content_sha256="a78ee1fddd86213f04af8aa0e0e6a78bfb43af57868afd61eeea7b79dc6734e1",
    ),
    DatasetInfo(
        name="coil20",
        file="coil20",
        n_samples=1440,
        n_classes=20,
        image_shape=(1, 128, 128),
        n_features=16384,
        description="COIL-20 processed: 20 objects x 72 poses, 128x128 grey",
        origin=f"{_CAVE}coil-20/coil-20-proc.zip (Columbia CAVE)",
        reference=_COIL_REF.format("CUCS-005-96"),
        remote=_single(
            "zip",
            "coil-20-proc.zip",
            (_CAVE + "coil-20/coil-20-proc.zip", _CAVE_OLD + "coil-20/coil-20-proc.zip"),
            None,
        ),
        converter=converters.convert_coil20,
        content_sha256="539f8c8f14cf82a25e7ffac9a6cd01a24fdc9431892f7cf76afe83cf1830164e",
    ),
    DatasetInfo(
        name="coil100",
        file="coil100",
        n_samples=7200,
        n_classes=100,
        image_shape=(3, 32, 32),
        n_features=3072,
        description="COIL-100: 100 objects x 72 angles, RGB, downscaled 128x128 -> 32x32 (4x4 box)",
        origin=f"{_CAVE}coil-100/coil-100.zip (Columbia CAVE)",
        reference=_COIL_REF.format("CUCS-006-96"),
        # sha256: tensorflow/datasets, tensorflow_datasets/url_checksums/coil100.txt.
        remote=_single(
            "zip",
            "coil-100.zip",
            (_CAVE + "coil-100/coil-100.zip", _CAVE_OLD + "coil-100/coil-100.zip"),
            "fcb4b8b01c0778f416d8d7a09f45082c4f7075cc74743dcddd5c44307bd4afe7",
        ),
        converter=converters.convert_coil100,
    ),
    DatasetInfo(
        name="orl",
        file="orl",
        n_samples=400,
        n_classes=40,
        image_shape=(1, 32, 32),
        n_features=1024,
        description="ORL / AT&T faces, 40 subjects x 10, Deng Cai's 32x32 version",
        origin=f"{_DSC}ORL_32x32.mat",
        reference="F. Samaria, A. Harter, Parameterisation of a stochastic model for human face "
        "identification, 1994" + _CAI,
        remote=_single(
            "mat",
            "ORL_32x32.mat",
            (_DSC + "ORL_32x32.mat",),
            "c30cb53be2cab2da293eaeb35c1a7c16cad513fa14d0400ad5ed51f03e1ce7c8",
        ),
        converter=converters.mat_converter(),
        content_sha256="f2f64eb58b351b1aa1cffab779d980a820f8c968a16b5756f82a0b6ab6f82936",
    ),
    DatasetInfo(
        name="yale",
        file="yale",
        n_samples=165,
        n_classes=15,
        image_shape=(1, 32, 32),
        n_features=1024,
        description="Yale faces, 15 subjects x 11, Deng Cai's 32x32 version",
        origin=f"{_CNN_SPARSE}Yale_32x32.mat",
        reference="P. Belhumeur, J. Hespanha, D. Kriegman, Eigenfaces vs. Fisherfaces, IEEE TPAMI "
        "1997" + _CAI,
        remote=_single(
            "mat",
            "Yale_32x32.mat",
            (_CNN_SPARSE + "Yale_32x32.mat",),
            "beb3cc9f448c1ab786583c8f5429368c299843ee88263f9650ed463004ef7633",
        ),
        converter=converters.mat_converter(),
        content_sha256="8350a988aae62c4016b96846e2bae3f6b7fb05a9e86c91f637463fe74286497f",
    ),
    DatasetInfo(
        name="yaleb",
        file="yaleb",
        n_samples=2414,
        n_classes=38,
        image_shape=(1, 32, 32),
        n_features=1024,
        description="Extended Yale B cropped faces, 38 subjects, Deng Cai's 32x32 version",
        origin=f"{_CNN_SPARSE}YaleB_32x32_ori.mat",
        reference="K.-C. Lee, J. Ho, D. Kriegman, Acquiring linear subspaces for face recognition "
        "under variable lighting, IEEE TPAMI 2005" + _CAI,
        remote=_single(
            "mat",
            "YaleB_32x32_ori.mat",
            (_CNN_SPARSE + "YaleB_32x32_ori.mat",),
            "3fbbda4eb781b9bb28025189677b6727706e114eb0215bbfd718f1f4fcb54b99",
        ),
        converter=converters.mat_converter(),
        content_sha256="af883ff0c8ee0e1e19293b2d858ccb486cbd39175e75629982a86d07a779cdcc",
    ),
    DatasetInfo(
        name="cmu_pie",
        file="cmu_pie",
        n_samples=2856,
        n_classes=68,
        image_shape=(1, 32, 32),
        n_features=1024,
        description="CMU PIE faces, the 68 subjects x 42 images subset, 32x32",
        origin=f"{_PCPSNMF}PIE.mat",
        reference="T. Sim, S. Baker, M. Bsat, The CMU Pose, Illumination, and Expression (PIE) "
        "Database, IEEE FG 2002",
        remote=_single(
            "mat",
            "PIE.mat",
            (_PCPSNMF + "PIE.mat",),
            "d0e0a37aea4623e0505c5d7f5372ee1df8ecd5ca46ba4523765d45e05ac360c2",
        ),
        converter=converters.mat_converter(fea_transposed=True),
    ),
    DatasetInfo(
        name="reuters10k",
        file="reuters10k",
        n_samples=10000,
        n_classes=4,
        image_shape=None,
        n_features=2000,
        description="REUTERS-10K (DEC): 10,000 RCV1 documents, tf-idf of the 2,000 most frequent "
        "words, 4 categories",
        origin="no canonical single-file source: supply reuters10k.npz (e.g. converted from DEC's "
        "reutersidf10k.npy)",
        reference="J. Xie, R. Girshick, A. Farhadi, Unsupervised Deep Embedding for Clustering "
        "Analysis, ICML 2016",
        kind="features",
    ),
)

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in _REGISTRY}
_ALIASES = {
    "fashion": "fashion_mnist",
    "fmnist": "fashion_mnist",
    "fashion_mnist_test": "fashion_test",
    "coil_20": "coil20",
    "coil_100": "coil100",
    "pie": "cmu_pie",
    "cmupie": "cmu_pie",
    "yale_b": "yaleb",
    "reuters": "reuters10k",
    "reuters_10k": "reuters10k",
}


# --------------------------------------------------------------------------- public API


def get_data_home(data_home: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder holding the data-set npz files.

    Parameters
    ----------
    data_home : path-like or None, default=None
        Explicit folder. When None, the environment variable ``AECLUST_DATA`` is used if set and
        non-empty, else ``~/.cache/aeclust``.

    Returns
    -------
    pathlib.Path
        The folder, with ``~`` expanded. It is not created here (only a download creates it).
    """
    if data_home is None:
        env = os.environ.get(ENV_VAR, "").strip()
        data_home = env if env else DEFAULT_DATA_HOME
    return Path(data_home).expanduser()


def get_dataset_info(name: str) -> DatasetInfo:
    """Return the registry entry of a data set.

    Parameters
    ----------
    name : str
        Data set name (case-insensitive; ``-`` and ``_`` are equivalent; a few aliases such as
        ``fashion-mnist`` or ``pie`` are accepted).

    Returns
    -------
    DatasetInfo

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names and suggests the closest one.
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key in DATASETS:
        return DATASETS[key]
    close = difflib.get_close_matches(key, list(DATASETS) + list(_ALIASES), n=1, cutoff=0.6)
    hint = f" (did you mean {_ALIASES.get(close[0], close[0])!r}?)" if close else ""
    raise ValueError(
        f"unknown dataset {name!r}{hint}; valid names: {', '.join(DATASETS)}; for your own data "
        "use aeclust.datasets.load_file(path)"
    )


def list_datasets(data_home: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Describe every registered data set and whether its file is in the data home.

    Parameters
    ----------
    data_home : path-like or None, default=None
        See :func:`get_data_home`.

    Returns
    -------
    list of dict
        One dict per data set with keys ``name``, ``n_samples``, ``shape`` (the (C, H, W) image
        shape, or ``(n_features,)``), ``n_features``, ``n_classes``, ``present`` (whether its npz
        is in the data home; always True for ``digits``), ``downloadable``, ``description`` and
        ``source`` (the canonical origin).
    """
    home = get_data_home(data_home)
    out = []
    for info in _REGISTRY:
        present = info.file is None or (home / f"{info.file}.npz").is_file()
        out.append(
            {
                "name": info.name,
                "n_samples": info.n_samples,
                "shape": info.image_shape if info.image_shape is not None else (info.n_features,),
                "n_features": info.n_features,
                "n_classes": info.n_classes,
                "present": present,
                "downloadable": info.file is None or DATASETS[info.file].downloadable,
                "description": info.description,
                "source": info.origin,
            }
        )
    return out


def _place_hint(file: str, home: Path) -> str:
    return (
        f"place {file}.npz in {home} (format: {NPZ_FORMAT}) or set {ENV_VAR} to a folder that "
        "holds it"
    )


def fetch_dataset(
    name: str, data_home: str | os.PathLike[str] | None = None, *, timeout: float = 60.0
) -> Path:
    """Download a data set from its canonical source and write its npz file.

    Each raw file is downloaded to a temporary file in ``<data_home>/downloads/<file>/``, verified
    by its published sha256 and moved into place; where no published sha256 is known, the
    converted ``x``/``y`` content is verified against the sha256 of the reference copy instead.
    The npz is written to a temporary file and moved into place with :func:`os.replace`. The raw
    files are removed once the npz is written.

    Parameters
    ----------
    name : str
        Registry name (``mnist_test`` fetches ``mnist``).
    data_home : path-like or None, default=None
        See :func:`get_data_home`; created when missing.
    timeout : float, default=60.0
        Socket timeout per request, in seconds.

    Returns
    -------
    pathlib.Path
        Path of the written npz file.

    Raises
    ------
    ValueError
        If the name is unknown.
    FileNotFoundError
        If the data set has no downloadable source (``reuters10k``).
    DownloadError
        If a download fails (the message names the data set, the URL and the failure).
    ChecksumError
        If a file or the converted content has the wrong sha256 (the bad files are deleted).
    """
    info = get_dataset_info(name)
    home = get_data_home(data_home)
    if info.file is None:
        raise ValueError(f"{info.name} is embedded in scikit-learn and needs no download")
    owner = DATASETS[info.file]
    if not owner.downloadable:
        raise FileNotFoundError(_missing_message(owner, home))
    dest = home / f"{owner.file}.npz"
    raw_dir = home / "downloads" / str(owner.file)
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot download {owner.name}: data home {home} is not writable ({exc}); "
            f"{_place_hint(str(owner.file), home)}"
        ) from exc

    paths: dict[str, Path] = {}
    for remote in owner.remote:
        try:
            paths[remote.key] = download_file(remote, raw_dir, dataset=owner.name, timeout=timeout)
        except ChecksumError as exc:
            raise ChecksumError(f"{exc}; {_place_hint(str(owner.file), home)}") from exc
        except DownloadError as exc:
            raise DownloadError(
                f"{exc} (network unreachable?); {_place_hint(str(owner.file), home)}"
            ) from exc

    urls = ", ".join(r.urls[0] for r in owner.remote)
    try:
        with tempfile.TemporaryDirectory(dir=raw_dir, prefix=".convert-") as work:
            assert owner.converter is not None
            arrays = owner.converter(paths, Path(work))
        x, y, split = check_manifest_arrays(
            {"x": arrays.x, "y": arrays.y, "split": arrays.split},
            f"{owner.name} converted from {urls}",
            image_hw=owner.stored_sample_shape,
            n_classes=owner.n_classes,
        )
    except (ValueError, OSError) as exc:
        raise DownloadError(f"could not convert {owner.name} from {urls}: {exc}") from exc

    all_raw_verified = all(r.sha256 is not None for r in owner.remote)
    if owner.content_sha256 is not None:
        got = content_sha256(x, y)
        if got != owner.content_sha256:
            message = (
                f"content checksum mismatch for {owner.name} converted from {urls}: expected "
                f"sha256 {owner.content_sha256} of x then y, got {got}"
            )
            if not all_raw_verified:
                shutil.rmtree(raw_dir, ignore_errors=True)
                raise ChecksumError(
                    f"{message}; the downloaded files were deleted; "
                    f"{_place_hint(str(owner.file), home)}"
                )
            logger.warning("%s (the raw files matched their published sha256)", message)

    atomic_savez(dest, x=x, y=y, split=split)
    shutil.rmtree(raw_dir, ignore_errors=True)
    logger.info("wrote %s (%d samples)", dest, x.shape[0])
    return dest


def _missing_message(info: DatasetInfo, home: Path) -> str:
    if info.kind == "features":
        return (
            f"{info.name} has no canonical single-file source and cannot be downloaded: supply "
            f"{home / f'{info.file}.npz'} with keys x (float32 tf-idf, shape (N, "
            f"{info.n_features})) and y (int64 labels 0..{info.n_classes - 1}), e.g. converted "
            f"from DEC's reutersidf10k.npy, or set {ENV_VAR} to a folder that holds it"
        )
    return f"{info.file}.npz not found; {_place_hint(str(info.file), home)}"


def _load_digits(scale: str | None) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # pixel values are 0..16 (both present), so "unit" is x / 16
    scaling = scaling_for(bunch.data, scale)
    x = apply_scaling(bunch.data, scaling)
    y = np.asarray(bunch.target, dtype=np.int64)
    return Dataset(
        x=x,
        y=y,
        n_classes=10,
        image_shape=(1, 8, 8),
        name="digits",
        source="sklearn.datasets.load_digits",
        split=np.zeros(len(y), np.uint8),
        scaling=scaling,
    )


def load_dataset(
    name: str,
    data_home: str | os.PathLike[str] | None = None,
    *,
    scale: str | None = "unit",
    download: bool = True,
) -> Dataset:
    """Load a named benchmark data set.

    Parameters
    ----------
    name : str
        One of ``digits``, ``mnist``, ``mnist_test``, ``fashion_mnist``, ``fashion_test``,
        ``usps``, ``coil20``, ``coil100``, ``orl``, ``yale``, ``yaleb``, ``cmu_pie``,
        ``reuters10k`` (see :func:`list_datasets`).
    data_home : path-like or None, default=None
        Folder holding ``<file>.npz``; see :func:`get_data_home`.
    scale : {"unit", "raw", None}, default="unit"
        ``"unit"`` maps 8-bit pixels to [0, 1] (x / 255; digits: x / 16); None or ``"raw"``
        keeps the raw values as float32. ``reuters10k`` (tf-idf) is never rescaled.
    download : bool, default=True
        Download and convert the data set when its npz is absent (see :func:`fetch_dataset`).

    Returns
    -------
    Dataset
        ``x`` float32 (N, D), images flattened in (C, H, W) order; ``y`` int64; ``split``.

    Raises
    ------
    ValueError
        If the name is unknown, or the npz file is malformed (the message says what is wrong).
    FileNotFoundError
        If the npz is absent and cannot or may not be downloaded.
    DownloadError
        If downloading fails.

    Examples
    --------
    >>> from aeclust.datasets import load_dataset
    >>> ds = load_dataset("digits")
    >>> ds.x.shape, ds.images().shape, ds.n_classes
    ((1797, 64), (1797, 1, 8, 8), 10)
    """
    info = get_dataset_info(name)
    scale = check_scale(scale)
    if info.kind == "builtin":
        return _load_digits(scale)
    assert info.file is not None
    home = get_data_home(data_home)
    path = home / f"{info.file}.npz"
    owner = DATASETS[info.file]
    if not path.is_file():
        if not owner.downloadable:
            raise FileNotFoundError(_missing_message(owner, home))
        if not download:
            raise FileNotFoundError(
                f"{_missing_message(owner, home)}; or pass download=True to fetch it from "
                f"{owner.origin}"
            )
        fetch_dataset(info.file, home)

    features = info.kind == "features"
    x, y, split = read_manifest_npz(
        path,
        image_hw=owner.stored_sample_shape,
        n_classes=owner.n_classes,
        float_x=features,
        require_split=not features,
    )
    if info.split_value is not None:
        if split is None:  # pragma: no cover (split is required for image data)
            raise ValueError(f"{path}: has no 'split' key, cannot select the test rows")
        keep = split == info.split_value
        x, y, split = x[keep], y[keep], split[keep]
    if x.shape[0] != info.n_samples:
        logger.warning(
            "%s: %d samples, the registry expects %d; using the file as is",
            path,
            x.shape[0],
            info.n_samples,
        )
    scaling = None
    if features:
        flat, image_shape = np.asarray(x, dtype=np.float32), None
    else:
        raw, image_shape = flatten_images(x, str(path))
        scaling = scaling_for(raw, scale)
        flat = apply_scaling(raw, scaling)
    return Dataset(
        x=flat,
        y=y,
        n_classes=info.n_classes,
        image_shape=image_shape,
        name=info.name,
        source=str(path),
        split=split,
        scaling=scaling,
    )
