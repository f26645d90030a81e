"""The :class:`Dataset` container and the pixel-scaling rule shared by every loader."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

Scale = Literal["unit", "raw"] | None
SCALES = ("unit", "raw", None)


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A data set as flat float32 rows plus its metadata.

    Parameters
    ----------
    x : numpy.ndarray of shape (N, D)
        The samples, float32, C-contiguous. Images are flattened row-major in (C, H, W) order, so
        ``x.reshape(N, *image_shape)`` is NCHW. A read-only memory map of a float ``.npy`` file
        (``load_file(..., mmap=True)``) is kept as it is, float32 or float64: the estimators that
        stream read it batch by batch (:mod:`aeclust.rows`).
    y : numpy.ndarray of shape (N,) or None
        Integer class labels (int64), 0..K-1, or None when the data has no labels.
    n_classes : int or None
        Number of classes K, or None when unknown.
    image_shape : tuple of int (C, H, W) or None
        Shape of one image, or None for non-image data.
    name : str
        Name of the data set (a registry name, or the file name for user data).
    source : str
        Where the data came from (file path, folder, or a description of the origin).
    split : numpy.ndarray of shape (N,) or None, default=None
        Official split per row (0 = train, 1 = test) when the source has one.
    class_names : tuple of str or None, default=None
        Original class names (folder names, CSV label strings), indexed by label.
    scaling : tuple of float or None, default=None
        The map ``x = (raw - offset) / divisor`` applied to the stored values when they were
        read (``scale="unit"``), as ``(offset, divisor)``; None when they were kept raw. A model
        fitted on these rows needs new data mapped the same way (:func:`apply_scaling`).

    Notes
    -----
    The dataclass is frozen (the attributes cannot be re-bound) but the arrays are ordinary
    writable numpy arrays so that :func:`torch.from_numpy` works without a copy.
    """

    x: np.ndarray
    y: np.ndarray | None
    n_classes: int | None
    image_shape: tuple[int, int, int] | None
    name: str
    source: str
    split: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    scaling: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        x = np.asarray(self.x)
        if x.ndim != 2:
            raise ValueError(
                f"Dataset {self.name!r}: x must be 2-D (n_samples, n_features), got shape {x.shape}"
            )
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise TypeError(f"Dataset {self.name!r}: x must be real numeric, got dtype {x.dtype}")
        if isinstance(self.x, np.memmap) and x.dtype.kind == "f" and x.flags.c_contiguous:
            x = self.x  # data larger than memory stays in its file
        else:
            x = np.ascontiguousarray(x, dtype=np.float32)
        object.__setattr__(self, "x", x)
        n = x.shape[0]

        if self.y is not None:
            y = np.asarray(self.y)
            if y.ndim != 1 or y.shape[0] != n:
                raise ValueError(f"Dataset {self.name!r}: y must have shape ({n},), got {y.shape}")
            if not np.issubdtype(y.dtype, np.integer):
                raise TypeError(f"Dataset {self.name!r}: y must be integer, got dtype {y.dtype}")
            object.__setattr__(self, "y", np.ascontiguousarray(y, dtype=np.int64))

        if self.split is not None:
            split = np.asarray(self.split)
            if split.shape != (n,):
                raise ValueError(
                    f"Dataset {self.name!r}: split must have shape ({n},), got {split.shape}"
                )
            object.__setattr__(self, "split", np.ascontiguousarray(split, dtype=np.uint8))

        if self.image_shape is not None:
            shape = tuple(int(s) for s in self.image_shape)
            if len(shape) != 3 or min(shape) < 1:
                raise ValueError(
                    f"Dataset {self.name!r}: image_shape must be (C, H, W), got {self.image_shape}"
                )
            if int(np.prod(shape)) != x.shape[1]:
                raise ValueError(
                    f"Dataset {self.name!r}: image_shape {shape} holds {int(np.prod(shape))} "
                    f"values but x has {x.shape[1]} features"
                )
            object.__setattr__(self, "image_shape", shape)

        if self.n_classes is not None:
            object.__setattr__(self, "n_classes", int(self.n_classes))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.scaling is not None:
            try:
                object.__setattr__(self, "scaling", check_scaling(self.scaling))
            except ValueError as exc:
                raise ValueError(f"Dataset {self.name!r}: {exc}") from exc

    @property
    def n_samples(self) -> int:
        """int : Number of samples N."""
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        """int : Number of features D per sample."""
        return int(self.x.shape[1])

    def images(self) -> np.ndarray:
        """Return the samples as an image batch.

        Returns
        -------
        numpy.ndarray of shape (N, C, H, W)
            A view of :attr:`x` (no copy).

        Raises
        ------
        ValueError
            If the data set is not made of images (``image_shape`` is None).
        """
        if self.image_shape is None:
            raise ValueError(
                f"Dataset {self.name!r} has no image_shape (it is not image data); use .x instead"
            )
        return self.x.reshape(self.n_samples, *self.image_shape)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_samples={self.n_samples}, "
            f"n_features={self.n_features}, n_classes={self.n_classes}, "
            f"image_shape={self.image_shape}, source={self.source!r})"
        )


def check_scale(scale: object) -> str | tuple[float, float] | None:
    """Validate a ``scale`` argument.

    Parameters
    ----------
    scale : object
        The value given by the caller: ``"unit"``, ``"raw"``, None, or a recorded
        ``(offset, divisor)`` map (another data set's :attr:`Dataset.scaling`).

    Returns
    -------
    str or tuple of float or None
        ``"unit"``, the map as floats, or None (``"raw"`` is returned as None).

    Raises
    ------
    ValueError
        If ``scale`` is none of these, or the map is not finite with a positive divisor.
    """
    if scale is None or scale == "raw":
        return None
    if scale == "unit":
        return "unit"
    if isinstance(scale, (tuple, list)):
        return check_scaling(scale)
    raise ValueError(f"scale must be 'unit', 'raw', None or (offset, divisor), got {scale!r}")


def scaling_for(raw: np.ndarray, scale: object) -> tuple[float, float] | None:
    """The ``(offset, divisor)`` map a ``scale`` argument means for these raw values.

    Parameters
    ----------
    raw : numpy.ndarray
        The values as read.
    scale : {"unit", "raw", None} or (offset, divisor)
        ``"unit"``: :func:`unit_scaling` of ``raw``; a pair: that map (so that new rows are
        scaled as the training rows were); ``"raw"``/None: no map.

    Returns
    -------
    tuple of float or None
    """
    scale = check_scale(scale)
    if scale == "unit":
        return unit_scaling(raw)
    return scale  # a validated pair, or None


def unit_scaling(x: np.ndarray) -> tuple[float, float]:
    """The map of ``scale="unit"`` for these raw values, as ``(offset, divisor)``.

    Parameters
    ----------
    x : numpy.ndarray
        Raw values of any real dtype.

    Returns
    -------
    tuple of float
        ``(offset, divisor)`` such that ``(x - offset) / divisor`` lies in [0, 1]: unsigned
        integers and booleans use ``(0, dtype maximum)`` (uint8 -> ``(0, 255)``), values already
        in [0, 1] ``(0, 1)``, anything else its global minimum and range. Recording the pair lets
        new data be scaled exactly as the training data were (:func:`apply_scaling`).
    """
    if np.issubdtype(x.dtype, np.unsignedinteger) or x.dtype == np.bool_:
        return 0.0, 1.0 if x.dtype == np.bool_ else float(np.iinfo(x.dtype).max)
    if x.size == 0:
        return 0.0, 1.0
    # min/max of the float32 values, which is what the scaled array is computed from
    values = x.astype(np.float32, copy=False)
    return range_scaling(float(values.min()), float(values.max()))


def range_scaling(lo: float, hi: float) -> tuple[float, float]:
    """The ``scale="unit"`` map of real values spanning [``lo``, ``hi``]: ``(0, 1)`` when they
    are already in [0, 1], else min-max ``(lo, hi - lo)`` (divisor 1 for a constant)."""
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    logger.info("scale='unit': min-max scaling values from [%g, %g] to [0, 1]", lo, hi)
    return lo, (hi - lo) if hi > lo else 1.0


def check_scaling(scaling: object) -> tuple[float, float]:
    """Validate an ``(offset, divisor)`` map (:func:`unit_scaling`).

    Parameters
    ----------
    scaling : object
        The value given (a pair of numbers, e.g. read back from a model file as a list).

    Returns
    -------
    tuple of float
        ``(offset, divisor)`` as floats.

    Raises
    ------
    ValueError
        If it is not two finite numbers with a positive divisor.
    """
    try:
        offset, divisor = (float(v) for v in scaling)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(f"scaling must be a pair (offset, divisor), got {scaling!r}") from None
    if not (np.isfinite(offset) and np.isfinite(divisor) and divisor > 0):
        raise ValueError(f"scaling must be a finite (offset, divisor > 0), got {scaling!r}")
    return offset, divisor


def apply_scaling(x: np.ndarray, scaling: tuple[float, float] | None) -> np.ndarray:
    """Convert raw values to float32 and apply a recorded ``(offset, divisor)`` map.

    Parameters
    ----------
    x : numpy.ndarray
        Raw values of any real dtype.
    scaling : tuple of float or None
        ``(offset, divisor)`` from :func:`unit_scaling` (possibly of other data: the training
        set's); None keeps the values.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape, ``(x - offset) / divisor``.

    Raises
    ------
    ValueError
        If the divisor is not a positive finite number.
    """
    out = x.astype(np.float32)
    if scaling is None:
        return out
    offset, divisor = check_scaling(scaling)
    if offset != 0.0:
        out -= np.float32(offset)
    if divisor != 1.0:
        out /= np.float32(divisor)
    return out


def encode_labels(values: np.ndarray) -> tuple[np.ndarray, int, tuple[str, ...] | None]:
    """Map arbitrary labels to 0..K-1.

    Parameters
    ----------
    values : numpy.ndarray of shape (N,)
        Labels of any dtype (integers, strings).

    Returns
    -------
    y : numpy.ndarray of shape (N,), int64
        Codes 0..K-1 in sorted order of the distinct labels.
    n_classes : int
        Number K of distinct labels.
    class_names : tuple of str or None
        The original labels by code, or None when the labels already were the integers 0..K-1.
    """
    values = np.asarray(values)
    uniq, codes = np.unique(values, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    k = len(uniq)
    if np.issubdtype(values.dtype, np.integer) and np.array_equal(uniq, np.arange(k)):
        return codes, k, None
    return codes, k, tuple(str(u) for u in uniq)
