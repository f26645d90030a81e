"""Parsers for the raw files of each data set's canonical source, and their conversion to the npz
format (``x`` uint8 (N, H, W) or (N, H, W, C), ``y`` int64, ``split`` uint8).

Every converter takes ``files`` (the verified local raw files by key) and ``workdir`` (an empty
scratch folder inside the cache, removed afterwards) and returns :class:`RawArrays`.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from .download import safe_extract_zip

logger = logging.getLogger(__name__)


class RawArrays(NamedTuple):
    """Arrays of one data set in the npz format."""

    x: np.ndarray
    y: np.ndarray
    split: np.ndarray


Converter = Callable[[Mapping[str, Path], Path], RawArrays]


def _open_maybe_gzip(path: Path) -> BinaryIO:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not.

    Parameters
    ----------
    path : path-like
        ``*-idx3-ubyte[.gz]`` (images) or ``*-idx1-ubyte[.gz]`` (labels).

    Returns
    -------
    numpy.ndarray
        uint8 array of the shape stored in the header.

    Raises
    ------
    ValueError
        If the header is not an unsigned-byte IDX header or the size does not match it.
    """
    path = Path(path)
    with _open_maybe_gzip(path) as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (header {data[:4].hex()})")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise ValueError(
            f"{path}: IDX header says {dims} ({expected} bytes) but {len(data) - offset} follow"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims).copy()


def convert_idx(files: Mapping[str, Path], workdir: Path) -> RawArrays:
    """Convert the four MNIST-style IDX files (train then test, original order).

    Parameters
    ----------
    files : mapping
        Keys ``train_images``, ``train_labels``, ``test_images``, ``test_labels``.
    workdir : pathlib.Path
        Unused.

    Returns
    -------
    RawArrays
        ``x`` (N, 28, 28), ``split`` 0 for the training rows and 1 for the test rows.
    """
    parts_x, parts_y, parts_s = [], [], []
    for split, prefix in enumerate(("train", "test")):
        xi = read_idx(files[f"{prefix}_images"])
        yi = read_idx(files[f"{prefix}_labels"])
        if xi.ndim != 3 or yi.ndim != 1 or xi.shape[0] != yi.shape[0]:
            raise ValueError(f"{prefix} IDX files disagree: images {xi.shape}, labels {yi.shape}")
        parts_x.append(xi)
        parts_y.append(yi.astype(np.int64))
        parts_s.append(np.full(yi.shape[0], split, dtype=np.uint8))
    return RawArrays(np.concatenate(parts_x), np.concatenate(parts_y), np.concatenate(parts_s))


def read_esl_zip(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an ESL "ZIP code" file (``zip.train.gz`` / ``zip.test.gz``).

    Each line is a digit followed by 256 grey values in [-1, 1] (a 16x16 image, row-major).

    Parameters
    ----------
    path : path-like
        The file, gzip-compressed or not.

    Returns
    -------
    x : numpy.ndarray of shape (N, 16, 16), uint8
        ``round((v + 1) * 127.5)``: background 0, ink 255.
    y : numpy.ndarray of shape (N,), int64
        The digits.
    """
    path = Path(path)
    with _open_maybe_gzip(path) as fh, io.TextIOWrapper(fh, encoding="ascii") as text:
        table = np.loadtxt(text, dtype=np.float64, ndmin=2)
    if table.shape[1] != 257:
        raise ValueError(f"{path}: expected 257 columns (label + 16x16 pixels), got {table.shape}")
    values = table[:, 1:]
    if values.min() < -1.0 - 1e-9 or values.max() > 1.0 + 1e-9:
        raise ValueError(f"{path}: pixel values must lie in [-1, 1]")
    x = np.clip(np.round((values + 1.0) * 127.5), 0, 255).astype(np.uint8).reshape(-1, 16, 16)
    y = table[:, 0].astype(np.int64)
    return x, y


def convert_usps(files: Mapping[str, Path], workdir: Path) -> RawArrays:
    """Convert the ESL USPS files (7,291 train rows, then 2,007 test rows).

    Parameters
    ----------
    files : mapping
        Keys ``train`` and ``test``.
    workdir : pathlib.Path
        Unused.

    Returns
    -------
    RawArrays
    """
    x_tr, y_tr = read_esl_zip(files["train"])
    x_te, y_te = read_esl_zip(files["test"])
    split = np.concatenate([np.zeros(len(y_tr), np.uint8), np.ones(len(y_te), np.uint8)])
    return RawArrays(np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te]), split)


def read_cai_mat(path: str | Path, *, side: int = 32, fea_transposed: bool = False) -> RawArrays:
    """Read one of Deng Cai's face ``.mat`` files (variables ``fea`` and ``gnd``).

    Parameters
    ----------
    path : path-like
        The ``.mat`` file (MATLAB v5, read with :func:`scipy.io.loadmat`).
    side : int, default=32
        Image side; each row of ``fea`` is a column-major ``side`` x ``side`` image.
    fea_transposed : bool, default=False
        Whether ``fea`` is stored (pixels, samples) rather than (samples, pixels).

    Returns
    -------
    RawArrays
        ``x = fea.reshape(-1, side, side).transpose(0, 2, 1)`` (upright faces), ``y = gnd - 1``,
        ``split`` all 0.
    """
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path, variable_names=["fea", "gnd"])
    except Exception as exc:  # scipy raises assorted types (MatReadError, IndexError, ...)
        raise ValueError(
            f"{path}: cannot read it as a MATLAB v5 .mat file ({type(exc).__name__}: {exc})"
        ) from exc
    if "fea" not in mat or "gnd" not in mat:
        raise ValueError(f"{path}: expected variables 'fea' and 'gnd'")
    fea = np.asarray(mat["fea"])
    if fea_transposed:
        fea = fea.T
    gnd = np.asarray(mat["gnd"]).reshape(-1)
    if fea.ndim != 2 or fea.shape[1] != side * side or fea.shape[0] != gnd.shape[0]:
        raise ValueError(f"{path}: fea {fea.shape} and gnd {gnd.shape} do not match {side}x{side}")
    if fea.dtype != np.uint8:
        if fea.min() < 0 or fea.max() > 255 or not np.array_equal(fea, np.round(fea)):
            raise ValueError(f"{path}: fea must hold 8-bit grey levels, got dtype {fea.dtype}")
        fea = fea.astype(np.uint8)
    x = np.ascontiguousarray(fea.reshape(-1, side, side).transpose(0, 2, 1))
    y = gnd.astype(np.int64) - 1
    return RawArrays(x, y, np.zeros(len(y), np.uint8))


def mat_converter(*, fea_transposed: bool = False) -> Converter:
    """Return a converter for a single Deng Cai ``.mat`` file under key ``mat``.

    Parameters
    ----------
    fea_transposed : bool, default=False
        See :func:`read_cai_mat`.

    Returns
    -------
    callable
        ``(files, workdir) -> RawArrays``.
    """

    def convert(files: Mapping[str, Path], workdir: Path) -> RawArrays:
        return read_cai_mat(files["mat"], fea_transposed=fea_transposed)

    return convert


_COIL_NAME = re.compile(r"^obj(\d+)__(\d+)\.png$", re.IGNORECASE)


def _coil_files(root: Path, n_objects: int, per_object: int) -> list[tuple[int, int, Path]]:
    found = []
    for p in root.rglob("*"):
        m = _COIL_NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), int(m.group(2)), p))
    found.sort(key=lambda t: (t[0], t[1]))
    objects = sorted({o for o, _, _ in found})
    counts = np.bincount([o for o, _, _ in found], minlength=n_objects + 1)[1:]
    if objects != list(range(1, n_objects + 1)) or not (counts == per_object).all():
        raise ValueError(
            f"expected {n_objects} objects x {per_object} images named objK__A.png, found "
            f"{len(found)} images of {len(objects)} objects"
        )
    return found


def coil_converter(
    n_objects: int, per_object: int, *, rgb: bool = False, size: int | None = None
) -> Converter:
    """Return a converter for a COIL zip of ``objK__A.png`` images (key ``zip``).

    Parameters
    ----------
    n_objects : int
        Number of objects K (labels ``K - 1``).
    per_object : int
        Images per object; samples are ordered by (object, number after ``__``).
    rgb : bool, default=False
        Keep colour (converted to RGB, stored (N, H, W, 3)); otherwise 8-bit grey.
    size : int or None, default=None
        Downscale each image to ``size`` x ``size`` with PIL ``Image.resize(...,
        Image.Resampling.BOX)`` (an area average rounded to uint8); None keeps the size.

    Returns
    -------
    callable
        ``(files, workdir) -> RawArrays``; the zip is extracted safely into ``workdir``.
    """

    def convert(files: Mapping[str, Path], workdir: Path) -> RawArrays:
        from PIL import Image

        safe_extract_zip(files["zip"], workdir)
        found = _coil_files(workdir, n_objects, per_object)
        mode = "RGB" if rgb else "L"
        images = []
        for _, _, p in found:
            with Image.open(p) as im:
                img = im if im.mode == mode else im.convert(mode)
                if size is not None:
                    img = img.resize((size, size), Image.Resampling.BOX)
                images.append(np.asarray(img))
        shapes = {a.shape for a in images}
        if len(shapes) != 1:
            raise ValueError(f"COIL images differ in size: {sorted(shapes)}")
        x = np.stack(images)
        y = np.array([o - 1 for o, _, _ in found], dtype=np.int64)
        return RawArrays(x, y, np.zeros(len(y), np.uint8))

    return convert


#: ``coil-20-proc.zip``: 1,440 grey 128x128 PNGs, ordered by (object, pose 0..71).
convert_coil20 = coil_converter(20, 72)
#: ``coil-100.zip``: 7,200 RGB 128x128 PNGs downscaled to 32x32 (4x4 box average), ordered by
#: (object, angle 0, 5, ..., 355).
convert_coil100 = coil_converter(100, 72, rgb=True, size=32)
