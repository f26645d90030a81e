"""Where and with what a benchmark ran: machine, library versions, git commit, peak memory."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["git_commit", "machine_info", "peak_memory_mb", "reset_peak_memory", "versions"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """Describe this machine: CPU model, cores, torch threads, GPU, OS.

    Returns
    -------
    dict
        Keys ``cpu``, ``cores`` (logical CPUs), ``cores_usable`` (this process's affinity),
        ``torch_threads``, ``gpu`` (name or None), ``gpu_memory_gb``, ``platform``,
        ``hostname``.
    """
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover (not Linux)
        usable = os.cpu_count() or 0
    gpu = None
    gpu_mem = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        gpu_mem = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "cores_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "gpu_memory_gb": gpu_mem,
        "platform": platform.platform(),
        "hostname": platform.node(),
    }


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import numpy
    import sklearn
    import torch

    import aeclust

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "aeclust": aeclust.__version__,
    }


def _git_dir(start: Path) -> Path | None:
    for parent in (start, *start.parents):
        candidate = parent / ".git"
        if candidate.is_dir():
            return candidate
    return None


def _read_head(git: Path) -> str | None:
    try:
        head = (git / "HEAD").read_text().strip()
    except OSError:
        return None
    if not head.startswith("ref:"):
        return head or None
    ref = head.split(":", 1)[1].strip()
    try:
        return (git / ref).read_text().strip()
    except OSError:
        pass
    try:
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    except OSError:
        pass
    return None


def git_commit(path: str | os.PathLike[str] | None = None) -> str:
    """The commit of the aeclust source tree, with ``-dirty`` when tracked files are modified.

    Asks ``git`` when it is installed and reads ``.git/HEAD`` otherwise. The environment
    variable ``AECLUST_GIT_COMMIT``, when set, names the commit instead: for a copy of the source
    shipped to another machine (a GPU machine, say), which may have no ``.git`` folder or a stale
    one.

    Parameters
    ----------
    path : path-like, optional
        A folder inside the repository (default: this package's source folder).

    Returns
    -------
    str
        ``$AECLUST_GIT_COMMIT`` when set, else the commit hash, or ``"unknown"`` outside a git
        checkout.
    """
    named = os.environ.get("AECLUST_GIT_COMMIT", "").strip()
    if named:
        return named
    start = Path(path) if path is not None else Path(__file__).resolve().parent
    git = _git_dir(start.resolve())
    if git is None:
        return "unknown"
    root = git.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return f"{commit}-dirty" if status else commit
    except (OSError, subprocess.SubprocessError):
        return _read_head(git) or "unknown"


def reset_peak_memory(device: Any) -> None:
    """Reset the CUDA peak-memory counter of ``device`` (no-op on CPU)."""
    import torch

    if getattr(device, "type", str(device)).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: Any) -> tuple[float, str]:
    """Peak memory since the last reset (CUDA) or of the whole process (CPU).

    Returns
    -------
    megabytes : float
    kind : str
        ``"cuda_max_allocated"`` (``torch.cuda.max_memory_allocated``) or ``"cpu_max_rss"``
        (``ru_maxrss`` of this process, which never decreases).
    """
    import torch

    if getattr(device, "type", str(device)).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return rss * scale / 2**20, "cpu_max_rss"
