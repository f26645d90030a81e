"""Training rows read from a ``.npy`` file on demand: data larger than memory.

``fit(np.load("big.npy", mmap_mode="r"))`` does not read the file into memory for the methods
that can stream (``BaseDeepClusterer.out_of_core``): the estimator wraps the memory map's file in
:class:`DiskRows`, which looks like the ``(N, D)`` float32 tensor the training loop and the
whole-data passes expect (``shape``, ``device``, ``x[index]``, ``x[start:stop]``) and reads the
rows each minibatch or chunk needs with ``os.pread``. The file is never mapped, so the process's
resident memory holds a batch, a chunk and the embedding, not the data (a memory map would count
every page it touched).
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CHUNK_ROWS", "DiskRows", "disk_rows_of"]

#: Rows read at once by the streaming passes (validation, means, fingerprints).
CHUNK_ROWS = 16384


def disk_rows_of(X: Any) -> DiskRows | None:
    """:class:`DiskRows` over the file of a memory-mapped 2-D array (``np.load(path,
    mmap_mode="r")``, ``np.memmap``) of a float dtype in C order; None for anything else."""
    if not isinstance(X, np.memmap) or X.ndim != 2 or X.dtype.kind != "f":
        return None
    mapping = getattr(X, "_mmap", None)
    if not X.flags.c_contiguous or getattr(X, "filename", None) is None or mapping is None:
        return None
    # A view of a memory map (``big[1000:2000]``) keeps its parent's ``offset``: the rows' file
    # position is where the map starts (``offset`` rounded down to the mapping granularity, as
    # numpy maps it) plus the view's distance from the map's first byte.
    mapped_from = int(X.offset) - int(X.offset) % mmap.ALLOCATIONGRANULARITY
    first = np.frombuffer(mapping, dtype=np.uint8, count=1).ctypes.data
    return DiskRows(
        X.filename, offset=mapped_from + X.ctypes.data - first, shape=X.shape, dtype=X.dtype
    )


class DiskRows:
    """The rows of a 2-D array in a file, read on demand as float32 tensors on ``device``.

    Parameters
    ----------
    path : path-like
        The file (a ``.npy`` file or a raw ``np.memmap`` file).
    offset : int
        Byte offset of row 0 in the file (the ``.npy`` header's length).
    shape : (int, int)
        Rows and columns of the whole array.
    dtype : numpy dtype
        The stored float type; rows are returned as float32.
    device : torch.device or str, default="cpu"
    start, stop : int, optional
        The block of rows this object stands for (a process's shard); default all rows.
    shift : ndarray of shape (n_features,), optional
        Subtracted from every row read (the estimator's ``input_offset_``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        offset: int,
        shape: tuple[int, int],
        dtype: Any,
        device: torch.device | str = "cpu",
        start: int = 0,
        stop: int | None = None,
        shift: np.ndarray | None = None,
    ) -> None:
        self.path = Path(path)
        self.offset = int(offset)
        self.full_shape = (int(shape[0]), int(shape[1]))
        self.stored_dtype = np.dtype(dtype)
        self.device = torch.device(device)
        self.start = int(start)
        self.stop = self.full_shape[0] if stop is None else int(stop)
        if not 0 <= self.start <= self.stop <= self.full_shape[0]:
            raise ValueError(f"rows {start}:{stop} outside {self.full_shape[0]} rows")
        self.shift = None if shift is None else np.asarray(shift, dtype=np.float32)
        self.row_bytes = self.full_shape[1] * self.stored_dtype.itemsize
        self.dtype = torch.float32
        self._raw_sums: tuple[np.ndarray, float, bool] | None = None

    # -- what the training loop and the whole-data passes use -----------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of this block."""
        return (self.stop - self.start, self.full_shape[1])

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, key: Any) -> torch.Tensor:
        """Rows as a float32 tensor on the device: ``x[start:stop]`` (a contiguous read) or
        ``x[index]`` (a 1-D integer tensor or array of row positions in this block)."""
        if isinstance(key, slice):
            begin, end, step = key.indices(len(self))
            if step != 1:
                raise ValueError("DiskRows slices take step 1")
            rows = self.read(begin, end)
        else:
            index = key.detach().cpu().numpy() if isinstance(key, torch.Tensor) else key
            rows = self.take(np.asarray(index, dtype=np.int64))
        return torch.from_numpy(rows).to(self.device)

    def new_zeros(self, size: Any) -> torch.Tensor:
        """An empty result for a pass over no rows (as ``Tensor.new_zeros``)."""
        return torch.zeros(size, dtype=torch.float32, device=self.device)

    def block(self, start: int, stop: int, *, device: torch.device | str | None = None) -> DiskRows:
        """Rows ``start:stop`` of this block (a process's shard), as another DiskRows."""
        return DiskRows(
            self.path,
            offset=self.offset,
            shape=self.full_shape,
            dtype=self.stored_dtype,
            device=self.device if device is None else device,
            start=self.start + start,
            stop=self.start + stop,
            shift=self.shift,
        )

    def shifted(self, shift: np.ndarray | None) -> DiskRows:
        """The same rows with ``shift`` subtracted from each (the training mean, or None)."""
        out = self.block(0, len(self))
        out.shift = None if shift is None else np.asarray(shift, dtype=np.float32)
        return out

    # -- reading ----------------------------------------------------------------------------------
    def read(self, begin: int, end: int) -> np.ndarray:
        """Rows ``begin:end`` of this block, float32 (n, D), one read."""
        n = max(0, end - begin)
        raw = np.empty((n, self.full_shape[1]), dtype=self.stored_dtype)
        if n:
            with self._opened() as fd:
                self._pread_into(fd, raw, self.start + begin)
        return self._finish(raw)

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows at positions ``index`` of this block, in that order, float32 (len(index), D).

        The positions are read in file order, runs of consecutive rows in one read each.
        """
        raw = np.empty((index.size, self.full_shape[1]), dtype=self.stored_dtype)
        if not index.size:
            return self._finish(raw)
        if index.min() < 0 or index.max() >= len(self):
            raise IndexError(f"row index outside 0..{len(self) - 1}")
        order = np.argsort(index, kind="stable")
        wanted = index[order] + self.start
        breaks = (np.flatnonzero(np.diff(wanted) != 1) + 1).tolist()
        sorted_rows = np.empty_like(raw)
        # One read per run of consecutive rows: a shuffled minibatch of 256 rows costs up to 256
        # small reads (microseconds each, against milliseconds for its training step); a mapped
        # file would avoid them but count every page it touched as resident memory.
        with self._opened() as fd:
            for a, b in zip([0, *breaks], [*breaks, index.size], strict=True):
                self._pread_into(fd, sorted_rows[a:b], int(wanted[a]))
        raw[order] = sorted_rows
        return self._finish(raw)

    @contextmanager
    def _opened(self) -> Iterator[int]:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            yield fd
        finally:
            os.close(fd)

    def _pread_into(self, fd: int, out: np.ndarray, first_row: int) -> None:
        view = memoryview(out).cast("B")
        position = self.offset + first_row * self.row_bytes
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], position + done)
            if got == 0:
                raise OSError(f"{self.path}: the file ends before row {first_row + len(out)}")
            done += got

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        rows = raw.astype(np.float32, copy=False)
        if self.shift is not None:
            rows = rows - self.shift
        return np.ascontiguousarray(rows)

    def chunks(self, size: int = CHUNK_ROWS) -> Any:
        """The rows of this block in consecutive float32 arrays of ``size`` rows."""
        for begin in range(0, len(self), size):
            yield self.read(begin, min(begin + size, len(self)))

    # -- whole-file summaries, streamed -----------------------------------------------------------
    def fingerprint(self) -> str:
        """SHA-256 of the block's shape, dtype and bytes (as ``pretrain.data_fingerprint``)."""
        h = hashlib.sha256()
        h.update(f"{self.shape}|{np.dtype(np.float32).str}|".encode())
        for chunk in self.chunks():
            h.update(memoryview(chunk).cast("B"))
        return h.hexdigest()

    def raw_sums(self) -> tuple[np.ndarray, float, bool]:
        """Column sums (float64) of the stored values (no shift), the sum of the squares of
        every value, and whether all values are finite: one pass, kept for later calls."""
        if self._raw_sums is None:
            unshifted = self.shifted(None)
            column = np.zeros(self.full_shape[1], dtype=np.float64)
            squares, finite = 0.0, True
            for chunk in unshifted.chunks():
                finite = finite and bool(np.isfinite(chunk).all())
                column += chunk.sum(axis=0, dtype=np.float64)
                squares += float(np.einsum("ij,ij->", chunk, chunk, dtype=np.float64))
            self._raw_sums = (column, squares, finite)
        return self._raw_sums

    def value_range(self) -> tuple[float, float]:
        """Smallest and largest value of the rows as read (shift included), chunk by chunk."""
        lo, hi = np.inf, -np.inf
        for chunk in self.chunks():
            if chunk.size:
                lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
        return lo, hi

    def summary(self) -> list[float]:
        """Shape, sum and Euclidean norm (float64) of the rows as read (shift included): the
        cheap identity a training checkpoint keeps of its data."""
        total = squares = 0.0
        for chunk in self.chunks():
            total += float(chunk.sum(dtype=np.float64))
            squares += float(np.einsum("ij,ij->", chunk, chunk, dtype=np.float64))
        return [float(n) for n in self.shape] + [total, float(np.sqrt(squares))]
