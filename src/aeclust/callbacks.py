"""Callbacks of the training loop: progress, early stopping, checkpoint/resume, timing.

A :class:`Callback` sees a :class:`~aeclust.training.Trainer` at the points of its loop
(``on_fit_start``, ``on_epoch_start``, ``on_step_end``, ``on_epoch_end``, ``on_fit_end``), as
PyTorch Lightning's and Keras' callbacks do; the loop itself knows none of them. A trainer gets
its callbacks from its ``callbacks`` argument, from its convenience arguments (``verbose``:
:class:`ProgressBar`; ``early_stopping``; ``checkpoint_path``: :class:`Checkpoint`) and from the
blocks open around it (:func:`training_callbacks`): that is how :func:`checkpointing`,
:func:`tally_training` and :func:`probing_cost` reach the stages a fit starts deep inside a
method, through one context variable instead of module lists.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from aeclust import distributed
from aeclust._utils import atomic_torch_save


class Trainer(Protocol):
    """What a callback sees of :class:`aeclust.training.Trainer` (declared here, not imported:
    the loop imports its callbacks, never the other way)."""

    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    epochs: int
    batch_size: int
    desc: str
    resume_key: str | None
    tensors: Sequence[torch.Tensor]
    n_batches: int
    n_steps: int
    history: list[dict[str, Any]]
    start_epoch: int
    should_stop: bool
    cut_epoch: bool
    stopped_early: bool
    probed: bool
    clock: Callable[[], float]
    hook_seconds: float
    active_callbacks: list[Callback]


logger = logging.getLogger("aeclust.training")

__all__ = [
    "Callback",
    "Checkpoint",
    "CostProbe",
    "EarlyStopping",
    "ProgressBar",
    "StageCost",
    "StopTraining",
    "TrainingTally",
    "checkpointing",
    "probing",
    "probing_cost",
    "tally_training",
    "training_callbacks",
]


class Callback:
    """Hooks a :class:`~aeclust.training.Trainer` calls around its loop; each does nothing here.

    ``on_epoch_end`` may return True to stop training after the epoch (the record is already in
    ``trainer.history``; ``trainer.should_stop`` says whether an earlier hook stops it);
    ``on_step_end`` may set ``trainer.cut_epoch`` to end the epoch after this step. A callback
    with state returns it from :meth:`state_dict`, which :class:`Checkpoint` saves and restores.
    """

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch (``trainer.tensors`` is the training data)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the epoch's first step (before the module's own ``on_epoch_start``)."""

    def on_step_end(self, trainer: Trainer, n_samples: int) -> None:
        """After each optimisation step on ``n_samples`` rows."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> bool | None:
        """After the epoch and the module's own ``on_epoch_end``; True stops training."""
        return None

    def on_fit_end(self, trainer: Trainer) -> None:
        """After the last epoch, when training ended without an exception."""

    def state_dict(self) -> dict[str, Any] | None:
        """State to keep in checkpoints; None: nothing."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


class StopTraining(Exception):
    """Raised by a hook (e.g. ``before_step``) to end training cleanly, as when DEC's label
    changes fall below its tolerance."""


# -- blocks that give every trainer inside them a callback ------------------------------------
CallbackFactory = Callable[[Trainer], "Callback | None"]
_AMBIENT: ContextVar[tuple[CallbackFactory, ...]] = ContextVar("aeclust_callbacks", default=())


@contextmanager
def training_callbacks(*factories: CallbackFactory) -> Iterator[None]:
    """Give every :class:`~aeclust.training.Trainer` created inside the block the callback each
    factory makes for it (a factory may return None to leave a trainer alone).

    For a callback that must reach the stages a fit starts inside a method::

        with training_callbacks(lambda trainer: MyLogger(trainer.desc)):
            DEC(10).fit(X)
    """
    token = _AMBIENT.set((*_AMBIENT.get(), *factories))
    try:
        yield
    finally:
        _AMBIENT.reset(token)


def ambient_callbacks(trainer: Trainer) -> None:
    """Append the callbacks of the open :func:`training_callbacks` blocks to
    ``trainer.active_callbacks``, innermost block first (a factory sees what the inner blocks
    and the trainer itself gave)."""
    for factory in reversed(_AMBIENT.get()):
        callback = factory(trainer)
        if callback is not None:
            trainer.active_callbacks.append(callback)


# -- early stopping -------------------------------------------------------------------------
@dataclass
class EarlyStopping(Callback):
    """Stop when the monitored epoch value has not improved for ``patience`` epochs.

    Parameters
    ----------
    patience : int
        Epochs without improvement before stopping.
    min_delta : float
        Relative improvement that counts (``value < best * (1 - min_delta)``).
    monitor : str
        Key of the epoch record to watch (the training loss by default: labels are never used).
    """

    patience: int = 10
    min_delta: float = 1e-4
    monitor: str = "loss"

    def __post_init__(self) -> None:
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, record: dict[str, Any]) -> bool:
        """Update with one epoch record; return True when training should stop."""
        value = float(record[self.monitor])
        if value < self.best - abs(self.best) * self.min_delta or math.isinf(self.best):
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> bool | None:
        if self.step(record):
            record["stopped_early"] = True
            trainer.stopped_early = True
            return True
        return None

    def state(self) -> dict[str, float]:
        """Picklable state for checkpoints."""
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state(self, state: dict[str, float]) -> None:
        """Restore :meth:`state`."""
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])

    def state_dict(self) -> dict[str, Any]:
        return self.state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_state(state)


# -- progress -------------------------------------------------------------------------------
class ProgressBar(Callback):
    """A tqdm bar over the epochs, with the last epoch's loss."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if self.bar is None:  # after a resume: the bar starts at the restored epoch
            self.bar = tqdm(total=trainer.epochs, initial=epoch, desc=trainer.desc, leave=False)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{record['loss']:.4g}")

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()


# -- checkpoint / resume ----------------------------------------------------------------------
def _tensor_fingerprint(tensors: Sequence[torch.Tensor]) -> list[float]:
    # Cheap identity of the training data (shape, sum, sum of squares in float64): enough to
    # refuse a checkpoint left by another data set or scaling, without hashing every byte.
    out: list[float] = []
    for t in tensors:
        if hasattr(t, "summary"):  # rows read from a file (aeclust.rows), summed in chunks
            out += t.summary()
            continue
        flat = t.detach().reshape(-1)
        if not flat.is_floating_point():
            flat = flat.double()
        total = flat.sum(dtype=torch.float64)
        norm = torch.linalg.vector_norm(flat, dtype=torch.float64)
        out += [float(n) for n in t.shape] + [float(total), float(norm)]
    return out


class Checkpoint(Callback):
    """Save the training state at epoch ends and resume from it.

    The state is the trainer's module (its ``state_dict``, extra state included), optimiser,
    shuffling generator, the global RNGs, the history, the step count and every callback's
    :meth:`~Callback.state_dict`. A file left by another run (other data, network, epochs or
    batch size) is ignored with a warning; the file is removed once training finishes.

    In a data-parallel fit (:mod:`aeclust.distributed`) every process keeps its own file
    (``name.rank{r}-of-{n}.pt``: its rows' state, such as DEC's target P), the first process
    decides when to save, and a run resumes only when every process finds a file of the same
    epoch (else all start over), so the processes stay in step.

    Parameters
    ----------
    path : path-like
    every : int, default=1
        Save every so many epochs (when ``interval_s`` is None).
    interval_s : float, optional
        Save at most every so many wall seconds instead.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, every: int = 1, interval_s: float | None = None
    ) -> None:
        self.path = Path(path)
        self.every = max(1, int(every))
        self.interval_s = interval_s
        self.signature: dict[str, Any] = {}
        self.last_save = time.monotonic()

    def on_fit_start(self, trainer: Trainer) -> None:
        self.path = distributed.process_path(self.path)
        self.signature = {
            "desc": trainer.desc,
            "epochs": trainer.epochs,
            "batch_size": trainer.batch_size,
            "data": _tensor_fingerprint(trainer.tensors),
            "module": [
                [k, list(v.shape)]
                for k, v in trainer.module.state_dict().items()
                if isinstance(v, torch.Tensor)  # not a module's extra state
            ],
        }
        state = self._read(trainer) if self.path.exists() else None
        epoch = -1 if state is None else int(state["epoch"])
        device = trainer.tensors[0].device
        if not distributed.same_everywhere(epoch, device=device):
            logger.warning(
                "ignoring checkpoint %s: the other processes' files are missing or of another "
                "epoch; starting %s from scratch",
                self.path,
                trainer.desc,
            )
            state = None
        if state is not None:
            self._load(trainer, state)
        self.last_save = time.monotonic()

    def _read(self, trainer: Trainer) -> dict[str, Any] | None:
        """The saved state, or None for a file that is unreadable or of another run."""
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: start over, do not crash
            logger.warning("ignoring unreadable checkpoint %s (%s)", self.path, exc)
            return None
        if state.get("signature", {}) != self.signature:
            logger.warning(
                "ignoring checkpoint %s: it was saved by a different run (data, network, epochs "
                "or batch size differ); starting %s from scratch",
                self.path,
                trainer.desc,
            )
            return None
        return state

    def _load(self, trainer: Trainer, state: dict[str, Any]) -> None:
        trainer.module.load_state_dict(state["module"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        cuda_rng = state.get("cuda_rng", [])
        if cuda_rng and torch.cuda.is_available() and len(cuda_rng) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_rng)
        trainer.history = list(state["history"])
        trainer.n_steps = int(state["n_steps"])
        saved = state.get("callbacks", {})
        for key, callback in _keyed(trainer.active_callbacks):
            if key in saved:
                callback.load_state_dict(saved[key])
        trainer.start_epoch = int(state["epoch"])
        logger.info("resumed %s from %s at epoch %d", trainer.desc, self.path, state["epoch"])

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        epoch = int(record["epoch"])
        if trainer.should_stop or epoch + 1 >= trainer.epochs:
            return
        if self.interval_s is None:
            due = (epoch + 1) % self.every == 0
        else:
            due = time.monotonic() - self.last_save >= self.interval_s
        # every process saves the same epoch (wall clocks differ between processes)
        if distributed.main_decides(due, device=trainer.tensors[0].device):
            self.save(trainer, epoch + 1)
            self.last_save = time.monotonic()

    def save(self, trainer: Trainer, epoch: int) -> None:
        """Write the state with which training resumes at ``epoch``, atomically."""
        callbacks = {}
        for key, callback in _keyed(trainer.active_callbacks):
            state = callback.state_dict()
            if state is not None:
                callbacks[key] = state
        state = {
            "epoch": epoch,
            "module": trainer.module.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "generator": trainer.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "history": trainer.history,
            "n_steps": trainer.n_steps,
            "callbacks": callbacks,
            "signature": self.signature,
        }
        atomic_torch_save(state, self.path)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.path.exists():
            self.path.unlink()


def _keyed(callbacks: Sequence[Callback]) -> Iterator[tuple[str, Callback]]:
    # by class and rank within the class: a resumed run inside other blocks (a tally) finds
    # its early stopping under the same key
    seen: dict[str, int] = {}
    for callback in callbacks:
        name = type(callback).__name__
        seen[name] = seen.get(name, 0) + 1
        yield f"{name}:{seen[name]}", callback


@contextmanager
def checkpointing(
    directory: str | os.PathLike[str], *, interval_s: float = 300.0
) -> Iterator[Path]:
    """Checkpoint the long training stages started inside the block, and resume them.

    A stage opts in by giving its :class:`~aeclust.training.Trainer` a ``resume_key`` (the
    shared pretraining and the training stage of DEC/IDEC, DCN, DKM, CT, VCC, k-DAE/DAMIC and
    ICAE); within the block such a trainer gets a :class:`Checkpoint` at
    ``directory/<resume_key>.pt``, saved at most every ``interval_s`` seconds (at epoch ends),
    and a later run of the same fit in the same block resumes from it instead of starting over.
    A checkpoint whose data, network, epochs or batch size differ from the stage that finds it
    is ignored (with a warning) and overwritten. The file is removed when the stage finishes.
    The innermost block wins; a trainer with its own ``checkpoint_path`` keeps it.

    The bench opens one such block per cell, so a cell cut off (a lease that ends, a killed
    process) resumes where it stopped::

        with aeclust.training.checkpointing("ckpt/icae-mnist-seed0"):
            ICAE(10, epochs=400).fit(X)   # interrupted, then run again: continues

    Parameters
    ----------
    directory : path-like
        Created with the first checkpoint written (a block whose stages never save leaves
        nothing behind).
    interval_s : float, default=300
        Minimum wall time between two saves; 0 saves after every epoch.

    Yields
    ------
    Path
        The directory.
    """
    if interval_s < 0:
        raise ValueError(f"interval_s must be >= 0, got {interval_s}")
    directory = Path(directory)

    def for_trainer(trainer: Trainer) -> Checkpoint | None:
        if not trainer.resume_key or probing():
            return None
        if any(isinstance(c, Checkpoint) for c in trainer.active_callbacks):
            return None  # its own path, or an inner block's
        return Checkpoint(directory / f"{trainer.resume_key}.pt", interval_s=float(interval_s))

    with training_callbacks(for_trainer):
        yield directory


# -- timing ---------------------------------------------------------------------------------
@dataclass
class TrainingTally(Callback):
    """Optimisation steps and training samples counted by :func:`tally_training`."""

    samples: int = 0
    steps: int = 0

    def on_step_end(self, trainer: Trainer, n_samples: int) -> None:
        self.samples += n_samples
        self.steps += 1


@contextmanager
def tally_training() -> Iterator[TrainingTally]:
    """Count every :class:`~aeclust.training.Trainer` step taken inside the block (all methods
    train through it).

    The throughput benchmark (:mod:`aeclust.bench.speed`) divides the samples by the wall time
    of a method's clustering phase, whatever the method's own notion of an epoch.

    Yields
    ------
    TrainingTally
        Filled as the steps run.
    """
    tally = TrainingTally()
    with training_callbacks(lambda trainer: tally):
        yield tally


@dataclass
class StageCost:
    """What one :class:`~aeclust.training.Trainer` run of a probed fit costs (see
    :func:`probing_cost`).

    Attributes
    ----------
    desc : str
        The stage's label (``"pretrain"``, a method's training stage, ...).
    planned_steps, planned_epochs : int
        Optimisation steps and epochs the stage would take in the real fit (an upper bound
        where it may stop early: a convergence test, early stopping).
    probed_steps : int
        Steps actually taken in the probe.
    step_seconds : float
        Wall seconds of one step, measured after the first (warm-up) step.
    epoch_seconds : float
        Wall seconds of the per-epoch hooks (a method's whole-data refreshes at epoch ends).
    probed_seconds : float
        Wall time the probe spent in this stage.
    """

    desc: str
    planned_steps: int
    planned_epochs: int
    probed_steps: int
    step_seconds: float
    epoch_seconds: float
    probed_seconds: float

    @property
    def seconds(self) -> float:
        """Projected wall seconds of the stage in the real fit."""
        return self.planned_steps * self.step_seconds + self.planned_epochs * self.epoch_seconds


@dataclass
class CostProbe:
    """The stages recorded inside one :func:`probing_cost` block."""

    steps: int
    stages: list[StageCost]
    clock: Callable[[], float] = time.perf_counter


_PROBES: ContextVar[tuple[CostProbe, ...]] = ContextVar("aeclust_cost_probes", default=())


@dataclass
class _StageProbe(Callback):
    """Cuts one trainer's run to the probe's steps, times them and records a StageCost."""

    probe: CostProbe
    marks: list[float] = field(default_factory=list)
    start: float = 0.0

    def on_fit_start(self, trainer: Trainer) -> None:
        trainer.clock = self.probe.clock  # the trainer times the module's epoch hooks with it
        trainer.probed = True
        self.start = self.probe.clock()

    def on_step_end(self, trainer: Trainer, n_samples: int) -> None:
        device = trainer.tensors[0].device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.marks.append(self.probe.clock())
        if len(self.marks) >= self.probe.steps:
            trainer.cut_epoch = True  # the probe has its timings: leave the epoch, and stop

    def on_fit_end(self, trainer: Trainer) -> None:
        marks = self.marks
        self.probe.stages.append(
            StageCost(
                desc=trainer.desc,
                planned_steps=trainer.epochs * trainer.n_batches,
                planned_epochs=trainer.epochs,
                probed_steps=len(marks),
                # median of the step intervals after the warm-up step: one step slowed by
                # another process does not set the projection
                step_seconds=float(np.median(np.diff(marks))) if len(marks) > 1 else 0.0,
                epoch_seconds=trainer.hook_seconds,
                probed_seconds=self.probe.clock() - self.start,
            )
        )


@contextmanager
def probing_cost(
    steps: int = 4, *, clock: Callable[[], float] = time.perf_counter
) -> Iterator[CostProbe]:
    """Cut every :class:`~aeclust.training.Trainer` run inside the block to ``steps`` steps and
    record its cost.

    A fit run inside the block does everything the real fit does (its whole-data steps at full
    size: k-means, target refreshes, kNN graphs) except the bulk of its optimisation: each
    training stage takes ``steps`` steps, times them, and records how many it would have taken
    (:class:`StageCost`). Nothing is written meanwhile: no checkpoints, no pretraining cache
    entries (a pretraining already cached costs nothing, as in the real fit).
    :func:`aeclust.cost.estimate_fit_cost` is built on it.

    Parameters
    ----------
    steps : int
        Steps per stage (the first is a warm-up and is not timed); at least 2.
    clock : callable, default=time.perf_counter
        The timer (seconds); ``time.process_time`` measures CPU time instead of wall time,
        which other processes on the machine do not change.

    Yields
    ------
    CostProbe
        Filled as the stages run.
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (one warm-up step + timed steps), got {steps}")
    probe = CostProbe(int(steps), [], clock)
    token = _PROBES.set((*_PROBES.get(), probe))
    try:
        with training_callbacks(lambda trainer: _StageProbe(probe)):
            yield probe
    finally:
        _PROBES.reset(token)


def probing() -> bool:
    """Whether a :func:`probing_cost` block is open (so that nothing should be persisted)."""
    return bool(_PROBES.get())
