"""Data-parallel fits under ``torch.distributed``: the one module that knows about processes.

A fit runs data-parallel when a process group is initialised with more than one process
(``torchrun --nproc-per-node N -m aeclust cluster ...``, or a Python program that calls
:func:`init_from_env` or ``torch.distributed.init_process_group`` itself). Every process is given
the whole ``X``; inside ``fit`` (:func:`sharded_fit`) each one keeps a contiguous block of rows
(:func:`shard_bounds`, rank order = row order), the :class:`~aeclust.training.Trainer` wraps the
method's module in :class:`torch.nn.parallel.DistributedDataParallel` (gradients averaged across
processes, the global batch as in one process), and the whole-data primitives combine
statistics with collectives instead of gathering the data (k-means: per-cluster sums and counts;
DEC's target: the cluster frequencies). ``labels_`` is gathered so that every process holds all
of it. Methods never ask how many processes run: outside :func:`sharded_fit`, and in one
process, every helper here is the identity.

Backends: NCCL for CUDA devices, gloo for CPUs, chosen by :func:`init_from_env`. No parameter
server, no RPC.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

__all__ = [
    "all_reduce_sum",
    "gather_rows",
    "gather_rows_with_grad",
    "global_mean",
    "init_from_env",
    "is_main_process",
    "launched_by_torchrun",
    "main_decides",
    "own_rows",
    "process_path",
    "replicated",
    "same_everywhere",
    "shard_bounds",
    "sharded",
    "sharded_fit",
    "shutdown",
    "total",
    "world",
]

logger = logging.getLogger(__name__)

_SHARDED: contextvars.ContextVar[bool] = contextvars.ContextVar("aeclust_sharded", default=False)


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Whether this process writes (labels, model files, printed results): rank 0."""
    return world()[0] == 0


def launched_by_torchrun() -> bool:
    """Whether the environment describes a group of several processes (``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def init_from_env(device: str | torch.device = "auto") -> bool:
    """Join the process group that ``torchrun`` describes in the environment.

    ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` (and ``LOCAL_RANK`` on GPUs)
    as torchrun sets them. The backend is NCCL when ``device`` resolves to CUDA (each process
    then uses GPU ``LOCAL_RANK``), gloo otherwise.

    Parameters
    ----------
    device : str or torch.device, default="auto"
        The device the fits will use.

    Returns
    -------
    bool
        Whether a group of several processes is initialised now.
    """
    from aeclust._utils import resolve_device

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if not launched_by_torchrun():
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    logger.info("process %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return dist.get_world_size() > 1


def shutdown() -> None:
    """Leave the process group (the end of a ``torchrun`` program).

    The DistributedDataParallel wrappers of finished fits are freed first (they sit in reference
    cycles until a garbage collection): one freed after the group is gone aborts the interpreter
    ("terminate called without an active exception").
    """
    import gc

    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


@contextmanager
def sharded_fit() -> Iterator[bool]:
    """The block of a fit whose training rows are this process's shard.

    Inside it (with several processes) the whole-data primitives reduce across processes and
    the Trainer trains data-parallel; it yields whether that is the case.
    """
    token = _SHARDED.set(world()[1] > 1)
    try:
        yield _SHARDED.get()
    finally:
        _SHARDED.reset(token)


@contextmanager
def replicated() -> Iterator[None]:
    """A block of a sharded fit that works on data every process holds whole (VCC's embedding of
    all points): the primitives do not reduce inside it, and every process computes the same."""
    token = _SHARDED.set(False)
    try:
        yield
    finally:
        _SHARDED.reset(token)


def own_rows(tensor: torch.Tensor) -> torch.Tensor:
    """This process's block of the rows of a tensor every process holds whole (the training rows
    of a method that replicates them, ``replicates_rows``); the tensor itself otherwise."""
    if not sharded():
        return tensor
    start, stop = shard_bounds(tensor.shape[0])
    return tensor[start:stop]


def sharded() -> bool:
    """Whether the code runs inside a data-parallel fit (:func:`sharded_fit`, several processes)."""
    return _SHARDED.get()


def shard_bounds(n: int, rank: int | None = None, size: int | None = None) -> tuple[int, int]:
    """``(start, stop)`` of this process's block of ``n`` rows: contiguous, near-equal, in rank
    order, so that concatenating the blocks of ranks 0, 1, ... restores the rows' order.

    Examples
    --------
    >>> [shard_bounds(10, r, 3) for r in range(3)]
    [(0, 3), (3, 6), (6, 10)]
    """
    if rank is None or size is None:
        rank, size = world()
    return n * rank // size, n * (rank + 1) // size


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the processes of a sharded fit, in place; the identity otherwise."""
    if sharded():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def total(value: float, *, device: torch.device | str = "cpu") -> float:
    """A number summed over the processes of a sharded fit (``value`` itself otherwise).

    ``device`` is where the collective runs (the training device: NCCL needs CUDA tensors).
    """
    if not sharded():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    return float(all_reduce_sum(t))


def global_mean(tensor: torch.Tensor) -> float:
    """The mean of ``tensor``'s elements over every process of a sharded fit (its own mean,
    as ``float(tensor.float().mean())``, otherwise)."""
    if not sharded():
        return float(tensor.float().mean())
    sums = torch.tensor([float(tensor.float().sum()), tensor.numel()], dtype=torch.float64)
    total_sum, count = all_reduce_sum(sums.to(tensor.device)).tolist()
    return total_sum / count


def gather_rows_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """:func:`gather_rows` through which gradients flow back to each process's own rows (a loss
    over the global batch, such as ICAE's MMD). With DistributedDataParallel averaging the
    gradients, every process's rows then get the gradient of the global-batch loss."""
    if not sharded():
        return tensor
    from torch.distributed.nn.functional import all_gather

    lengths, padded = _padded_block(tensor)
    blocks = all_gather(padded)
    return torch.cat([block[:length] for block, length in zip(blocks, lengths, strict=True)])


def main_decides(flag: bool, *, device: torch.device | str = "cpu") -> bool:
    """The first process's ``flag``, in every process of a sharded fit (``flag`` otherwise):
    for decisions every process must take alike, such as a time-based checkpoint."""
    if not sharded():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def same_everywhere(value: int, *, device: torch.device | str = "cpu") -> bool:
    """Whether every process of a sharded fit holds the same ``value`` (True otherwise)."""
    if not sharded():
        return True
    t = torch.tensor([value, -value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t[0]) == -int(t[1])


def process_path(path: os.PathLike[str] | str) -> Path:
    """``path`` for this process's own file: ``name.rank{r}-of-{n}.ext`` in a sharded fit, so
    that each process keeps the state of its rows (``path`` itself otherwise)."""
    path = Path(path)
    if not sharded():
        return path
    rank, size = world()
    return path.with_name(f"{path.stem}.rank{rank}-of-{size}{path.suffix}")


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """The rows of every process's ``tensor`` concatenated in rank order (every process gets
    them all); ``tensor`` itself outside a sharded fit. The blocks may differ in length."""
    if not sharded():
        return tensor
    lengths, padded = _padded_block(tensor)
    blocks = [torch.empty_like(padded) for _ in lengths]
    dist.all_gather(blocks, padded)
    return torch.cat([block[:length] for block, length in zip(blocks, lengths, strict=True)])


def _padded_block(tensor: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """Every process's row count, and ``tensor`` padded with zero rows to the largest (an
    all-gather needs blocks of one shape)."""
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world()[1])]
    dist.all_gather(counts, count)
    lengths = [int(c) for c in counts]
    pad = tensor.new_zeros((max(lengths) - tensor.shape[0], *tensor.shape[1:]))
    return lengths, torch.cat([tensor, pad]).contiguous()
