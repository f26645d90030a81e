"""Small shared helpers: devices, precision, local seeding, atomic files, input validation,
returning freed heap memory to the system."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

PRECISIONS = ("fp32", "bf16", "auto")


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the operating system (glibc ``malloc_trim(0)``).

    A pass over many batches that keeps each batch's small result (a whole-data embedding, the
    reads of a file larger than memory) leaves the batch's freed activations as holes under the
    kept results; glibc keeps such holes once its adaptive mmap threshold has risen to their
    size, and the resident memory grows with the number of batches (a 1,000,000-row embedding
    through a 2000-wide layer reached 8 GB). :func:`aeclust.training.batched_apply` calls it
    between batches. About a microsecond when there is nothing to return (more when there is:
    the pages are faulted in again by the next batch); a no-op without glibc.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn a device argument into a :class:`torch.device`.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` (or None) picks CUDA when it is available, otherwise the CPU. Anything else is
        passed to :class:`torch.device`.

    Returns
    -------
    torch.device
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda[:N]'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu'")
    return dev


@functools.lru_cache(maxsize=1)
def _cpu_has_native_bf16() -> bool:
    # Reading /proc/cpuinfo is a file read, not a subprocess probe.
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matrix multiplies natively (CPU flag or CUDA capability)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return _cpu_has_native_bf16()
    return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Map a precision name to the autocast dtype, or None for plain fp32.

    ``"auto"`` selects bf16 where the hardware has native bf16 matmul, else fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if has_native_bf16(device) else None
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """An autocast context for ``dtype`` on ``device`` (a no-op for fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_from(random_state: Any) -> int:
    """An integer seed from ``None``, an int or a :class:`numpy.random.RandomState`/Generator."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    raise ValueError(
        f"random_state must be None, an int or a numpy random state, got {random_state!r}"
    )


@contextlib.contextmanager
def local_seed(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed torch inside the block and restore the caller's global RNG state afterwards.

    Module initialisation and dropout draw from torch's global generator; forking it keeps a fit
    deterministic for its ``random_state`` without silently reseeding the user's global state.
    """
    devices = []
    if device is not None and device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices, enabled=True):
        torch.manual_seed(seed)
        yield


def make_generator(seed: int) -> torch.Generator:
    """A CPU :class:`torch.Generator` seeded with ``seed`` (used for shuffling and sampling)."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    If the block raises, the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions of a normally created file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file, then rename it into place."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def check_n_clusters(n_clusters: Any, n_samples: int) -> int:
    """Validate ``n_clusters`` against the number of samples."""
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise TypeError(f"n_clusters must be an int, got {type(n_clusters).__name__}")
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    if n_samples < n_clusters:
        raise ValueError(
            f"n_samples={n_samples} should be >= n_clusters={n_clusters}: "
            "too few samples for that many clusters"
        )
    return int(n_clusters)
