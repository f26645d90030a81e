"""Readers for user data (``.npy``, ``.npz``, ``.csv``, image folders) and for the npz format.

The npz format (one file per data set, written with :func:`numpy.savez_compressed`):

=========  ======  ==================================  ====================================
key        dtype   shape                               meaning
=========  ======  ==================================  ====================================
``x``      uint8   (N, H, W) grey or (N, H, W, C)      the samples, upright, row-major
``y``      int64   (N,)                                class labels 0..K-1
``split``  uint8   (N,)                                0 = train, 1 = test (all 0 if none)
=========  ======  ==================================  ====================================
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from .base import (
    Dataset,
    apply_scaling,
    check_scale,
    encode_labels,
    range_scaling,
    scaling_for,
)

logger = logging.getLogger(__name__)

NPZ_FORMAT = (
    "np.savez_compressed with x uint8 (N, H, W) or (N, H, W, C), y int64 (N,) labels 0..K-1, "
    "split uint8 (N,) 0=train/1=test"
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm", ".webp")
_GREY_MODES = ("1", "L", "LA")
_HIGH_BIT_GREY = ("I;16", "I;16L", "I;16B", "I", "F")


# --------------------------------------------------------------------------- npz format


def _open_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not an .npz archive")
        with data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read it as an .npz file ({exc})") from exc


def image_shape_from_array(shape: tuple[int, ...], where: str) -> tuple[tuple[int, int, int], bool]:
    """Return the (C, H, W) image shape of an image batch and whether it is channels-last.

    Parameters
    ----------
    shape : tuple of int
        Shape of a 3-D (N, H, W) or 4-D batch; 4-D batches are (N, H, W, C) when the last axis
        has 1, 3 or 4 entries, else (N, C, H, W) when the second has.
    where : str
        Description of the array for error messages.

    Returns
    -------
    image_shape : tuple of int
        (C, H, W).
    channels_last : bool
        Whether the batch must be transposed with ``(0, 3, 1, 2)`` to become NCHW.
    """
    if len(shape) == 3:
        return (1, shape[1], shape[2]), False
    if len(shape) == 4:
        if shape[3] in (1, 3, 4):
            return (shape[3], shape[1], shape[2]), True
        if shape[1] in (1, 3, 4):
            return (shape[1], shape[2], shape[3]), False
        raise ValueError(
            f"{where}: cannot tell the channel axis of a 4-D array of shape {shape}; store it as "
            "(N, H, W, C) or (N, C, H, W) with C in 1, 3, 4"
        )
    raise ValueError(f"{where}: expected a 2-D, 3-D or 4-D array, got shape {shape}")


def flatten_images(x: np.ndarray, where: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Flatten an image batch to (N, C*H*W) rows in (C, H, W) order.

    Parameters
    ----------
    x : numpy.ndarray
        3-D (N, H, W) or 4-D (N, H, W, C) / (N, C, H, W) array.
    where : str
        Description of the array for error messages.

    Returns
    -------
    flat : numpy.ndarray of shape (N, C*H*W)
        Same dtype as ``x``, C-contiguous.
    image_shape : tuple of int
        (C, H, W).
    """
    image_shape, channels_last = image_shape_from_array(x.shape, where)
    if channels_last:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x).reshape(x.shape[0], -1), image_shape


def check_manifest_arrays(
    arrays: dict[str, np.ndarray],
    where: str,
    *,
    image_hw: tuple[int, ...] | None = None,
    n_classes: int | None = None,
    float_x: bool = False,
    require_split: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate arrays of the npz format and return ``(x, y, split)``.

    Parameters
    ----------
    arrays : dict of str to numpy.ndarray
        The arrays (keys ``x``, ``y``, ``split``).
    where : str
        Description of the file for error messages.
    image_hw : tuple of int or None, default=None
        Expected per-sample shape, (H, W) or (H, W, C), or (D,) for ``float_x``; None: any.
    n_classes : int or None, default=None
        Labels must lie in 0..n_classes-1; None: any non-negative labels.
    float_x : bool, default=False
        Expect a 2-D floating ``x`` (feature vectors, e.g. tf-idf) instead of uint8 images.
    require_split : bool, default=True
        Whether ``split`` must be present.

    Returns
    -------
    x : numpy.ndarray
    y : numpy.ndarray of int64
    split : numpy.ndarray of uint8 or None

    Raises
    ------
    ValueError
        Naming the file and exactly what is wrong (missing key, dtype, shape, label range).
    """
    required = ("x", "y", "split") if require_split else ("x", "y")
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ValueError(
            f"{where}: missing key(s) {missing}; found {sorted(arrays)}; expected format: "
            + NPZ_FORMAT
        )
    extra = sorted(set(arrays) - {"x", "y", "split"})
    if extra:
        logger.warning("%s: ignoring unexpected key(s) %s", where, extra)
    x, y = arrays["x"], arrays["y"]
    if float_x:
        if not np.issubdtype(x.dtype, np.floating) or x.ndim != 2:
            raise ValueError(
                f"{where}: x must be a 2-D float array (N, D), got dtype {x.dtype} shape {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError(f"{where}: x contains NaN or infinite values")
    else:
        if x.dtype != np.uint8:
            raise ValueError(
                f"{where}: x must have dtype uint8, got {x.dtype}; format: {NPZ_FORMAT}"
            )
        if x.ndim not in (3, 4):
            raise ValueError(f"{where}: x must be (N, H, W) or (N, H, W, C), got shape {x.shape}")
    if image_hw is not None and tuple(x.shape[1:]) != tuple(image_hw):
        raise ValueError(
            f"{where}: each sample must have shape {tuple(image_hw)}, got {tuple(x.shape[1:])} "
            f"(x shape {x.shape})"
        )
    n = x.shape[0]
    if n == 0:
        raise ValueError(f"{where}: x holds no samples")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: y must be an integer array (int64), got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{where}: y must have shape ({n},) to match x, got {y.shape}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or (n_classes is not None and hi >= n_classes):
        expected = f"0..{n_classes - 1}" if n_classes is not None else "0..K-1"
        raise ValueError(f"{where}: labels must lie in {expected}, found {lo}..{hi}")
    split = arrays.get("split")
    if split is not None:
        if not np.issubdtype(split.dtype, np.integer) or split.shape != (n,):
            raise ValueError(
                f"{where}: split must be an integer array of shape ({n},), got dtype "
                f"{split.dtype} shape {split.shape}"
            )
        bad = np.setdiff1d(np.unique(split), [0, 1])
        if bad.size:
            raise ValueError(f"{where}: split values must be 0 (train) or 1 (test), found {bad}")
        split = split.astype(np.uint8, copy=False)
    return x, y.astype(np.int64, copy=False), split


def read_manifest_npz(
    path: str | os.PathLike[str],
    *,
    image_hw: tuple[int, ...] | None = None,
    n_classes: int | None = None,
    float_x: bool = False,
    require_split: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read and validate an npz file of the data-set format (keys ``x``, ``y``, ``split``).

    Parameters
    ----------
    path : path-like
        The ``.npz`` file; it is loaded with ``allow_pickle=False``.
    image_hw, n_classes, float_x, require_split
        See :func:`check_manifest_arrays`.

    Returns
    -------
    x : numpy.ndarray
    y : numpy.ndarray of int64
    split : numpy.ndarray of uint8 or None

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is unreadable or not in the format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return check_manifest_arrays(
        _open_npz(path),
        str(path),
        image_hw=image_hw,
        n_classes=n_classes,
        float_x=float_x,
        require_split=require_split,
    )


# --------------------------------------------------------------------------- user files


def _labels_for_dataset(
    y: np.ndarray | None, where: str
) -> tuple[np.ndarray | None, int | None, tuple[str, ...] | None]:
    if y is None:
        return None, None, None
    y = np.asarray(y)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise ValueError(f"{where}: labels y must be 1-D, got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            raise ValueError(
                f"{where}: labels y must be integers or strings, got fractional floats"
            )
        y = y.astype(np.int64)
    return encode_labels(y)


def _array_dataset(
    x: np.ndarray,
    y: np.ndarray | None,
    *,
    name: str,
    source: str,
    scale: str | tuple[float, float] | None,
    split: np.ndarray | None = None,
) -> Dataset:
    where = source
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(f"{where}: x must be numeric, got dtype {x.dtype}")
    if x.ndim == 2:
        flat, image_shape = x, None
    else:
        flat, image_shape = flatten_images(x, where)
    if flat.shape[0] == 0:
        raise ValueError(f"{where}: the array holds no samples")
    if np.issubdtype(flat.dtype, np.floating) and not np.isfinite(flat).all():
        bad = np.argwhere(~np.isfinite(flat))[0]
        raise ValueError(f"{where}: x has a NaN or infinite value (first at row {bad[0]})")
    codes, k, names = _labels_for_dataset(y, where)
    if codes is not None and codes.shape[0] != flat.shape[0]:
        raise ValueError(
            f"{where}: y has {codes.shape[0]} labels but x has {flat.shape[0]} samples"
        )
    scaling = scaling_for(flat, scale)
    return Dataset(
        x=apply_scaling(flat, scaling),
        y=codes,
        n_classes=k,
        image_shape=image_shape,
        name=name,
        source=source,
        split=split,
        class_names=names,
        scaling=scaling,
    )


def _read_npy(path: Path, scale: str | None, mmap: bool = False) -> Dataset:
    if mmap:
        mapped = _npy_memory_map(path, scale)
        if mapped is not None:
            return mapped
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read it as a .npy array ({exc})") from exc
    if not isinstance(x, np.ndarray):
        x.close()
        raise ValueError(f"{path}: expected a single array (.npy), got an .npz archive")
    if x.ndim not in (2, 3, 4):
        raise ValueError(
            f"{path}: expected a 2-D (n_samples, n_features) array or a 3-D/4-D image batch, "
            f"got shape {x.shape}"
        )
    return _array_dataset(x, None, name=path.stem, source=str(path), scale=scale)


def _npy_memory_map(path: Path, scale: object) -> Dataset | None:
    """A ``.npy`` file as a read-only memory map, left in its file (data larger than memory).

    Only a 2-D float array in C order whose ``scale`` map is the identity can be used as stored:
    raw values, or values already in [0, 1] under ``scale="unit"`` (checked chunk by chunk).
    Anything else returns None after saying why, and the caller reads the file into memory.
    """
    from aeclust.rows import disk_rows_of

    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None  # the in-memory reader says what is wrong with the file
    rows = disk_rows_of(x)
    if rows is None:
        logger.warning(
            "%s: only a 2-D float array in C order is read from disk (got %s, shape %s); "
            "reading it into memory",
            path,
            x.dtype,
            x.shape,
        )
        return None
    scaling = None
    if scale == "unit":
        scaling = range_scaling(*rows.value_range())
    elif isinstance(scale, tuple):
        scaling = scale
    if scaling not in (None, (0.0, 1.0)):
        logger.warning(
            "%s: scaling its values by %s needs them in memory; save the file already scaled "
            "(or give --scale raw) to read it from disk",
            path,
            scaling,
        )
        return None
    return Dataset(
        x=x,
        y=None,
        n_classes=None,
        image_shape=None,
        name=path.stem,
        source=str(path),
        scaling=scaling,
    )


def _read_npz(path: Path, scale: str | None) -> Dataset:
    arrays = _open_npz(path)
    if "x" not in arrays:
        raise ValueError(
            f"{path}: an .npz file must hold an array 'x' (and optionally 'y'); found "
            f"{sorted(arrays)}"
        )
    x, y, split = arrays["x"], arrays.get("y"), arrays.get("split")
    if split is not None and y is not None and x.dtype == np.uint8 and x.ndim in (3, 4):
        # The data-set npz format: validate it as such.
        x, y, split = check_manifest_arrays(arrays, str(path))
    return _array_dataset(x, y, name=path.stem, source=str(path), scale=scale, split=split)


def _is_number(cell: str) -> bool:
    """Whether ``cell`` parses as a float (``nan``/``inf`` count; finiteness is checked later)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_csv(
    path: Path, label_column: int | str | None, scale: str | None, header: bool | None
) -> Dataset:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc})") from exc
    sample = text[:65536]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    rows: list[list[str]] = []
    lines: list[int] = []
    for row in reader:
        if not row or all(not c.strip() for c in row):
            continue
        rows.append([c.strip() for c in row])
        lines.append(reader.line_num)
    if not rows:
        raise ValueError(f"{path}: the CSV file is empty")

    first = rows[0]
    if header is None:
        second = rows[1] if len(rows) > 1 else []
        header = all(not _is_number(c) for c in first) or any(
            not _is_number(c) and j < len(second) and _is_number(second[j])
            for j, c in enumerate(first)
        )
    names: list[str] | None = None
    if header:
        names = first
        rows, lines = rows[1:], lines[1:]
    if not rows:
        raise ValueError(f"{path}: the CSV file has a header but no data rows")
    n_cols = len(names) if names is not None else len(rows[0])
    for row, line in zip(rows, lines):
        if len(row) != n_cols:
            raise ValueError(f"{path}: line {line} has {len(row)} columns, expected {n_cols}")

    label_idx: int | None = None
    if label_column is not None:
        if isinstance(label_column, str) and not label_column.lstrip("-").isdigit():
            if names is None:
                raise ValueError(
                    f"{path}: label_column={label_column!r} is a name but the file has no header "
                    "row; pass the column index instead"
                )
            if label_column not in names:
                raise ValueError(f"{path}: no column named {label_column!r}; columns are {names}")
            label_idx = names.index(label_column)
        else:
            idx = int(label_column)
            if not -n_cols <= idx < n_cols:
                raise ValueError(
                    f"{path}: label_column={label_column} is out of range for {n_cols} columns"
                )
            label_idx = idx % n_cols
    feature_idx = [j for j in range(n_cols) if j != label_idx]
    if not feature_idx:
        raise ValueError(f"{path}: no feature columns left besides the label column")

    cells = np.array(rows, dtype=str)
    feats = cells[:, feature_idx]
    try:
        x = feats.astype(np.float64)
    except ValueError:
        x = None
    if x is None or not np.isfinite(x).all():
        for i, row in enumerate(feats):
            for jj, value in enumerate(row):
                cell, j = str(value), feature_idx[jj]
                col = f"column {j + 1}" + (f" ({names[j]!r})" if names is not None else "")
                if cell == "":
                    raise ValueError(f"{path}: line {lines[i]}, {col}: empty cell")
                if not _is_number(cell):
                    raise ValueError(f"{path}: line {lines[i]}, {col}: non-numeric value {cell!r}")
                if not np.isfinite(float(cell)):
                    raise ValueError(f"{path}: line {lines[i]}, {col}: non-finite value {cell!r}")
        raise ValueError(f"{path}: could not parse the numeric columns")  # pragma: no cover
    y = None
    if label_idx is not None:
        raw = cells[:, label_idx]
        if all(_is_number(c) for c in raw) and np.array_equal(
            raw.astype(np.float64), np.round(raw.astype(np.float64))
        ):
            y = raw.astype(np.float64).astype(np.int64)
        else:
            y = raw
    return _array_dataset(x, y, name=path.stem, source=str(path), scale=scale)


def _natural_key(path: Path) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _list_images(folder: Path) -> list[Path]:
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        ),
        key=_natural_key,
    )


def _read_image_folder(folder: Path, scale: str | None) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    top = _list_images(folder)
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = {d.name: _list_images(d) for d in class_dirs}
    per_class = {k: v for k, v in per_class.items() if v}
    if top and per_class:
        raise ValueError(
            f"{folder}: holds both images and class subfolders {sorted(per_class)}; put every "
            "image in a class subfolder, or use a flat folder without subfolders"
        )
    if per_class:
        class_names = tuple(sorted(per_class))
        files = [p for c in class_names for p in per_class[c]]
        y = np.concatenate(
            [np.full(len(per_class[c]), i, dtype=np.int64) for i, c in enumerate(class_names)]
        )
    elif top:
        class_names, files, y = None, top, None
    else:
        raise ValueError(
            f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} directly in the "
            "folder and in its subfolders)"
        )

    # First pass: sizes and modes from the headers only (PIL opens lazily).
    sizes: dict[tuple[int, int], list[Path]] = {}
    colour = False
    for p in files:
        try:
            with Image.open(p) as im:
                sizes.setdefault(im.size, []).append(p)
                colour = colour or im.mode not in _GREY_MODES + _HIGH_BIT_GREY
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"{p}: cannot read it as an image ({exc})") from exc
    if len(sizes) > 1:
        summary = ", ".join(
            f"{w}x{h}: {len(ps)} (e.g. {ps[0].relative_to(folder)})"
            for (w, h), ps in sorted(sizes.items(), key=lambda kv: -len(kv[1]))
        )
        raise ValueError(
            f"{folder}: all images must have the same size, found {summary}; resize them first"
        )

    arrays = []
    for p in files:
        with Image.open(p) as im:
            if colour:
                arr = np.asarray(im.convert("RGB"))
            elif im.mode in _GREY_MODES:
                arr = np.asarray(im.convert("L"))
            else:
                arr = np.asarray(im)
        arrays.append(arr)
    x = np.stack(arrays)
    if x.dtype == np.int32 and x.min() >= 0 and x.max() <= 65535:
        x = x.astype(np.uint16)
    ds = _array_dataset(x, None, name=folder.name, source=str(folder), scale=scale)
    if y is None:
        return ds
    return Dataset(
        x=ds.x,
        y=y,
        n_classes=len(class_names),
        image_shape=ds.image_shape,
        name=ds.name,
        source=ds.source,
        class_names=class_names,
        scaling=ds.scaling,
    )


def load_file(
    path: str | os.PathLike[str],
    *,
    label_column: int | str | None = None,
    scale: str | tuple[float, float] | None = None,
    header: bool | None = None,
    mmap: bool = False,
) -> Dataset:
    """Load user data from a file or a folder of images.

    Parameters
    ----------
    path : path-like
        One of

        - ``.npy``: a 2-D (n_samples, n_features) array, or a 3-D (N, H, W) / 4-D
          (N, H, W, C) or (N, C, H, W) image batch, which is flattened and ``image_shape`` set;
        - ``.npz``: an array ``x`` (as for ``.npy``) and optionally labels ``y`` (and ``split``,
          in which case the file is checked against the data-set npz format);
        - ``.csv`` (or ``.tsv``/``.txt``): numeric columns separated by ``,``, ``;`` or tabs, an
          optional header row and an optional label column;
        - a folder of images (PNG, JPEG, ...), either flat (no labels) or with one subfolder per
          class (labels from the sorted subfolder names). All images must share one size; if
          any is colour, all are converted to RGB, else to 8-bit grey.
    label_column : int or str or None, default=None
        CSV only: the column holding the labels, by header name or by 0-based index (negative
        counts from the end). Labels may be integers or strings; they are coded 0..K-1 in sorted
        order and the originals kept in ``class_names``.
    scale : {"unit", "raw", None} or (offset, divisor), default=None
        None/``"raw"`` keeps values (as float32); ``"unit"`` maps unsigned integers by their
        dtype's maximum (uint8 / 255) and min-max scales anything else to [0, 1]; a pair
        applies that map, e.g. ``scale=train.scaling`` scales new rows as the training rows
        were. The map used is kept in ``Dataset.scaling``.
    header : bool or None, default=None
        CSV only: whether the first row is a header; None detects it (a first row with a
        non-numeric cell above a numeric one, or with no numeric cell at all, is a header).
    mmap : bool, default=False
        ``.npy`` only: leave the rows in the file, as a read-only memory map in ``Dataset.x``,
        for data larger than memory (the estimators that stream read it batch by batch:
        ``BaseDeepClusterer.out_of_core``). Needs a 2-D float array in C order used as stored
        (raw, or already in [0, 1] under ``scale="unit"``); otherwise the file is read into
        memory, with a logged warning saying why.

    Returns
    -------
    Dataset
        ``y`` is None when the file carries no labels.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file type is unsupported or its content is malformed; the message says where.
    """
    scale = check_scale(scale)
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if mmap and (path.is_dir() or suffix != ".npy"):
        raise ValueError(f"{path}: reading from disk (mmap) applies to .npy files only")
    if path.is_dir():
        return _read_image_folder(path, scale)
    if label_column is not None and suffix not in (".csv", ".tsv", ".txt"):
        raise ValueError(f"{path}: label_column applies to CSV files only")
    if suffix == ".npy":
        return _read_npy(path, scale, mmap)
    if suffix == ".npz":
        return _read_npz(path, scale)
    if suffix in (".csv", ".tsv", ".txt"):
        return _read_csv(path, label_column, scale, header)
    raise ValueError(
        f"{path}: unsupported file type {suffix or '(none)'!r}; use .npy, .npz, .csv or a folder "
        "of images"
    )
