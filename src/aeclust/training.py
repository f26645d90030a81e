"""The one training loop used by every method.

The data live as tensors on the training device and minibatches are gathered by index, so a step
costs one gather plus the model's own work (no per-sample ``Dataset.__getitem__``). Loss values
are accumulated on the device and read back once per epoch, so the step has no host sync.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from aeclust._utils import atomic_torch_save, autocast, make_generator

logger = logging.getLogger(__name__)


class StopTraining(Exception):
    """Raised by a hook (e.g. ``before_step``) to end training cleanly, as when DEC's label
    changes fall below its tolerance."""


LossOutput = torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]
#: The optimisers :func:`make_optimizer` builds, by name.
OPTIMIZERS = ("adam", "adamw", "sgd")
LossFn = Callable[..., LossOutput]


class TrainingModule(nn.Module):
    """A method's model, apart from the loop (as PyTorch Lightning separates them).

    It holds the method's networks and its state: parameters (trained), buffers (centres,
    assignments) and, for state that is not a tensor of fixed shape (a target not yet computed,
    a record of updates, a random generator), PyTorch's own ``get_extra_state`` /
    ``set_extra_state``. All of it is in ``state_dict()``, so a :class:`Trainer` checkpoint of the
    module resumes the method with nothing else to save. :meth:`Trainer.fit` calls, per epoch::

        on_epoch_start(epoch)
        for each minibatch:  before_step(step); loss = training_step(idx, *batch); optimiser step
        on_epoch_end(epoch, record)
        ...
        on_train_end()                      # once, after the last epoch

    A method implements :meth:`training_step` (its loss, as the paper writes it) and the hooks
    it needs; the others do nothing. While :meth:`Trainer.fit` runs, ``self.trainer`` is that
    trainer (a hook that must touch the optimiser's state, as k-DAE's re-seeding, finds it
    there); it is None otherwise.
    """

    trainer: Trainer | None = None

    def training_step(self, idx: torch.Tensor, *batch: torch.Tensor) -> LossOutput:
        """The loss of one minibatch: a scalar, or ``(loss, {"part": value, ...})``.

        ``idx`` are the minibatch's row indices into the training tensors (for per-sample state
        such as a target distribution); ``batch`` the rows of each training tensor.
        """
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Before the epoch's first step (e.g. a schedule that follows the epoch)."""

    def before_step(self, step: int) -> None:
        """Before every optimisation step (``step`` counts from 0 over the whole run); may raise
        :class:`StopTraining` to end training there (a convergence test)."""

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> bool | None:
        """After the epoch: whole-data refreshes; may add entries to ``record``; True stops."""
        return None

    def on_train_end(self) -> None:
        """Once, after the last epoch (or a stop)."""


def make_optimizer(
    params: Any,
    name: str = "adam",
    lr: float = 1e-3,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """Build an optimiser by name (``adam``, ``adamw``, ``sgd``), fused where torch supports it.

    Parameters
    ----------
    params : iterable of parameters or parameter groups
    name : {"adam", "adamw", "sgd"}
    lr, momentum, weight_decay : float
        Learning rate, SGD momentum and L2 weight decay.
    """
    params = list(params)
    kernel = _optimizer_kernel(params)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, weight_decay=weight_decay, **kernel)
    if name == "sgd":
        # Not fused: torch 2.13's fused SGD fails when a parameter first receives a gradient after
        # the first step (its momentum buffer is still None), which VCC's centres do.
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=True
        )
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(map(repr, OPTIMIZERS))}")


def _optimizer_kernel(params: list[Any]) -> dict[str, bool]:
    """``fused=True`` when every parameter is a floating tensor on CPU or CUDA, else foreach.

    The fused kernels update all parameters in one pass; on the 2-core test machine they cut
    Adam's step for the 784-500-500-2000-10 autoencoder from ~9 ms to ~1.5 ms, which is most of
    what separates a bf16 step from 2x the fp32 one (``aeclust bench --speed``).
    """
    tensors = [t for g in params for t in (g["params"] if isinstance(g, dict) else [g])]
    fusable = all(
        isinstance(t, torch.Tensor) and t.is_floating_point() and t.device.type in ("cpu", "cuda")
        for t in tensors
    )
    return {"fused": True} if fusable and tensors else {"foreach": True}


@dataclass
class EarlyStopping:
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

    def state(self) -> dict[str, float]:
        """Picklable state for checkpoints."""
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state(self, state: dict[str, float]) -> None:
        """Restore :meth:`state`."""
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])


def batch_slices(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Start/stop pairs covering ``range(n)``; a trailing batch of one sample is merged into the
    previous one (batch norm cannot train on a single sample)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2] = (bounds[-2][0], n)
        bounds.pop()
    return bounds


@dataclass
class TrainingTally:
    """Optimisation steps and training samples counted by :func:`tally_training`."""

    samples: int = 0
    steps: int = 0


_ACTIVE_TALLIES: list[TrainingTally] = []


@contextmanager
def tally_training() -> Iterator[TrainingTally]:
    """Count every :class:`Trainer` step taken inside the block (all methods train through it).

    The throughput benchmark (:mod:`aeclust.bench.speed`) divides the samples by the wall time
    of a method's clustering phase, whatever the method's own notion of an epoch.

    Yields
    ------
    TrainingTally
        Filled as the steps run.
    """
    tally = TrainingTally()
    _ACTIVE_TALLIES.append(tally)
    try:
        yield tally
    finally:
        _ACTIVE_TALLIES.remove(tally)


@dataclass
class StageCost:
    """What one :class:`Trainer` run of a probed fit costs (see :func:`probing_cost`).

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


_ACTIVE_PROBES: list[CostProbe] = []


@contextmanager
def probing_cost(
    steps: int = 4, *, clock: Callable[[], float] = time.perf_counter
) -> Iterator[CostProbe]:
    """Cut every :class:`Trainer` run inside the block to ``steps`` steps and record its cost.

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
    _ACTIVE_PROBES.append(probe)
    try:
        yield probe
    finally:
        _ACTIVE_PROBES.remove(probe)


def probing() -> bool:
    """Whether a :func:`probing_cost` block is open (so that nothing should be persisted)."""
    return bool(_ACTIVE_PROBES)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class _CheckpointScope:
    directory: Path
    interval_s: float


_CHECKPOINT_SCOPES: list[_CheckpointScope] = []


@contextmanager
def checkpointing(
    directory: str | os.PathLike[str], *, interval_s: float = 300.0
) -> Iterator[Path]:
    """Checkpoint the long training stages started inside the block, and resume them.

    A stage opts in by giving its :class:`Trainer` a ``resume_key`` (the shared pretraining and
    the training stage of DEC/IDEC, DCN, DKM, CT, VCC, k-DAE/DAMIC and ICAE); within the block
    such a trainer saves its state to ``directory/<resume_key>.pt`` at most every ``interval_s``
    seconds (at epoch ends), and a later run of the same fit in the same block resumes from it
    instead of starting over. A checkpoint whose data, network, epochs or batch size differ from
    the stage that finds it is ignored (with a warning) and overwritten. The file is removed
    when the stage finishes.

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
    scope = _CheckpointScope(Path(directory), float(interval_s))
    _CHECKPOINT_SCOPES.append(scope)
    try:
        yield scope.directory
    finally:
        _CHECKPOINT_SCOPES.remove(scope)


def _tensor_fingerprint(tensors: Sequence[torch.Tensor]) -> list[float]:
    # Cheap identity of the training data (shape, sum, sum of squares in float64): enough to
    # refuse a checkpoint left by another data set or scaling, without hashing every byte.
    out: list[float] = []
    for t in tensors:
        flat = t.detach().reshape(-1)
        if not flat.is_floating_point():
            flat = flat.double()
        total = flat.sum(dtype=torch.float64)
        norm = torch.linalg.vector_norm(flat, dtype=torch.float64)
        out += [float(n) for n in t.shape] + [float(total), float(norm)]
    return out


class Trainer:
    """Minibatch training of ``module`` on tensors kept on the device.

    Parameters
    ----------
    module : nn.Module
        Everything that is trained (put extra parameters such as cluster centres in a
        ``nn.ModuleDict``/``nn.ParameterDict`` with it, so checkpoints capture them).
    optimizer : torch.optim.Optimizer
    epochs : int
        Number of passes over the data.
    batch_size : int
    seed : int
        Seeds the shuffling generator (local; global RNGs are not touched).
    autocast_dtype : torch.dtype or None
        ``torch.bfloat16`` to run the loss under autocast; None for fp32.
    early_stopping : EarlyStopping, optional
        Stops the loop when the training loss stalls.
    checkpoint_path : path, optional
        Where to save a checkpoint every ``checkpoint_every`` epochs. If the file exists when
        :meth:`run` starts, training resumes from it. It is removed when training finishes.
    checkpoint_every : int
    resume_key : str, optional
        Names this stage inside a :func:`checkpointing` block: when no ``checkpoint_path`` is
        given and a block is open, the stage checkpoints to ``<directory>/<resume_key>.pt``
        (time-based, the block's ``interval_s``) and resumes from it. Give it only to stages
        whose whole state is ``module``, ``optimizer``, the shuffling generator, the global RNG
        and what ``get_extra_state`` returns.
    shuffle : bool
    verbose : bool
        Show a tqdm progress bar over epochs.
    desc : str
        Progress bar label.
    """

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        epochs: int,
        batch_size: int = 256,
        seed: int = 0,
        autocast_dtype: torch.dtype | None = None,
        early_stopping: EarlyStopping | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        resume_key: str | None = None,
        shuffle: bool = True,
        verbose: bool = False,
        desc: str = "train",
    ) -> None:
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self.module = module
        self.optimizer = optimizer
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.generator = make_generator(seed)
        self.autocast_dtype = autocast_dtype
        self.early_stopping = early_stopping
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.checkpoint_every = max(1, int(checkpoint_every))
        # None: save every ``checkpoint_every`` epochs; a number: at most every so many seconds
        self.checkpoint_interval_s: float | None = None
        if self.checkpoint_path is None and resume_key and _CHECKPOINT_SCOPES:
            scope = _CHECKPOINT_SCOPES[-1]
            self.checkpoint_path = scope.directory / f"{resume_key}.pt"
            self.checkpoint_interval_s = scope.interval_s
        self._signature: dict[str, Any] = {}
        self.shuffle = shuffle
        self.verbose = verbose
        self.desc = desc
        self.history: list[dict[str, Any]] = []
        self.stopped_early = False
        self.n_steps = 0

    # -- checkpoints ----------------------------------------------------------------------------
    def _save_checkpoint(self, epoch: int) -> None:
        if self.checkpoint_path is None:
            return
        state = {
            "epoch": epoch,
            "module": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "history": self.history,
            "n_steps": self.n_steps,
            "early_stopping": self.early_stopping.state() if self.early_stopping else None,
            "signature": self._signature,
        }
        atomic_torch_save(state, self.checkpoint_path)

    def _load_checkpoint(self) -> int | None:
        """Restore the saved state and return its epoch; None (nothing restored) when it belongs
        to another run."""
        assert self.checkpoint_path is not None
        try:
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: start over, do not crash
            logger.warning("ignoring unreadable checkpoint %s (%s)", self.checkpoint_path, exc)
            return None
        if state.get("signature", {}) != self._signature:
            logger.warning(
                "ignoring checkpoint %s: it was saved by a different run (data, network, epochs "
                "or batch size differ); starting %s from scratch",
                self.checkpoint_path,
                self.desc,
            )
            return None
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        cuda_rng = state.get("cuda_rng", [])
        if cuda_rng and torch.cuda.is_available() and len(cuda_rng) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_rng)
        self.history = list(state["history"])
        self.n_steps = int(state["n_steps"])
        if self.early_stopping is not None and state["early_stopping"] is not None:
            self.early_stopping.load_state(state["early_stopping"])
        logger.info(
            "resumed %s from %s at epoch %d", self.desc, self.checkpoint_path, state["epoch"]
        )
        return int(state["epoch"])

    # -- the loop -------------------------------------------------------------------------------
    def fit(self, tensors: Sequence[torch.Tensor]) -> list[dict[str, Any]]:
        """Train ``module`` (a :class:`TrainingModule`) for ``epochs`` passes over ``tensors``.

        Its :meth:`TrainingModule.training_step` is the loss and its hooks run at the points
        :class:`TrainingModule` lists; its whole state (parameters, buffers, extra state) is what
        a checkpoint saves and a resumed run restores.

        Returns
        -------
        list of dict
            One record per epoch, as :meth:`run`.
        """
        module = self.module
        if not isinstance(module, TrainingModule):
            raise TypeError(
                f"Trainer.fit needs a TrainingModule, got {type(module).__name__}; "
                "use Trainer.run(tensors, loss_fn) for a plain module"
            )
        module.trainer = self
        try:
            history = self._loop(tensors, module.training_step, module)
            module.on_train_end()
        finally:
            module.trainer = None  # the module outlives the run; its optimiser need not
        module.eval()
        return history

    def run(self, tensors: Sequence[torch.Tensor], loss_fn: LossFn) -> list[dict[str, Any]]:
        """Train a plain ``module`` on ``loss_fn`` for ``epochs`` passes over ``tensors``.

        The loop of :meth:`fit` without a :class:`TrainingModule`'s hooks: for a network trained
        on a loss alone (a quick experiment, a test). A method's model is a
        :class:`TrainingModule` trained by :meth:`fit`.

        Parameters
        ----------
        tensors : sequence of Tensor
            Data on the training device (all with the same first dimension); minibatches are
            ``[t[idx] for t in tensors]``.
        loss_fn : callable
            ``loss_fn(idx, *batch) -> loss`` or ``(loss, {"part": value, ...})``; called under
            autocast when a low precision is set.

        Returns
        -------
        list of dict
            One record per epoch: ``epoch``, ``loss`` and each named loss part (sample means).
        """
        return self._loop(tensors, loss_fn, None)

    def _loop(
        self,
        tensors: Sequence[torch.Tensor],
        loss_fn: LossFn,
        hooks: TrainingModule | None,
    ) -> list[dict[str, Any]]:
        if not tensors:
            raise ValueError("tensors must not be empty")
        n = tensors[0].shape[0]
        device = tensors[0].device
        start_epoch = 0
        probe = _ACTIVE_PROBES[-1] if _ACTIVE_PROBES else None
        if probe is not None:  # a cost probe: nothing is saved, resumed or kept
            self.checkpoint_path = None
            step_marks: list[float] = []
            hook_seconds = 0.0
            probe_start = probe.clock()
        if self.checkpoint_path is not None:
            self._signature = {
                "desc": self.desc,
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "data": _tensor_fingerprint(tensors),
                "module": [
                    [k, list(v.shape)]
                    for k, v in self.module.state_dict().items()
                    if isinstance(v, torch.Tensor)  # not a module's extra state
                ],
            }
            restored = self._load_checkpoint() if self.checkpoint_path.exists() else None
            if restored is not None:
                start_epoch = restored
        last_save = time.monotonic()
        bounds = batch_slices(n, self.batch_size)
        bar = tqdm(
            range(start_epoch, self.epochs),
            desc=self.desc,
            disable=not self.verbose,
            leave=False,
            initial=start_epoch,
            total=self.epochs,
        )
        for epoch in bar:
            self.module.train()
            if hooks is not None:
                hook_start = probe.clock() if probe is not None else 0.0
                hooks.on_epoch_start(epoch)
                if probe is not None:
                    hook_seconds += probe.clock() - hook_start
            if self.shuffle:
                perm = torch.randperm(n, generator=self.generator).to(device, non_blocking=True)
            else:
                perm = torch.arange(n, device=device)
            total = torch.zeros((), device=device)
            parts_total: dict[str, torch.Tensor] = {}
            converged = False
            for start, stop in bounds:
                if hooks is not None:
                    try:
                        hooks.before_step(self.n_steps)
                    except StopTraining:
                        converged = True
                        break
                idx = perm[start:stop]
                batch = [t[idx] for t in tensors]
                with autocast(device, self.autocast_dtype):
                    out = loss_fn(idx, *batch)
                loss, parts = out if isinstance(out, tuple) else (out, {})
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.n_steps += 1
                if probe is not None:
                    _sync(device)
                    step_marks.append(probe.clock())
                    if len(step_marks) >= probe.steps:
                        converged = True  # the probe has its timings: leave the epoch
                        total += loss.detach().float() * float(stop - start)
                        start = stop
                        break
                for tally in _ACTIVE_TALLIES:
                    tally.samples += stop - start
                    tally.steps += 1
                weight = float(stop - start)
                total += loss.detach().float() * weight
                for key, value in parts.items():
                    acc = parts_total.setdefault(key, torch.zeros((), device=device))
                    acc += value.detach().float() * weight
            seen = start if converged else n
            if seen == 0:  # stopped before the epoch's first step: nothing to record
                break
            record: dict[str, Any] = {"epoch": epoch, "loss": float(total) / seen}
            for key, value in parts_total.items():
                record[key] = float(value) / seen
            if converged:
                record["converged"] = True
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(
                    f"{self.desc}: the loss became {record['loss']} at epoch {epoch}; "
                    "lower the learning rate or check the input scaling"
                )
            stop_now = converged
            if hooks is not None and (probe is not None or not converged):
                hook_start = probe.clock() if probe is not None else 0.0
                stop_now = bool(hooks.on_epoch_end(epoch, record)) or stop_now
                if probe is not None:
                    hook_seconds += probe.clock() - hook_start
            if self.early_stopping is not None and self.early_stopping.step(record):
                stop_now = True
                self.stopped_early = True
                record["stopped_early"] = True
            self.history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.4g}")
            if stop_now:
                break
            if self.checkpoint_interval_s is None:
                due = (epoch + 1) % self.checkpoint_every == 0
            else:
                due = time.monotonic() - last_save >= self.checkpoint_interval_s
            if self.checkpoint_path is not None and due and epoch + 1 < self.epochs:
                self._save_checkpoint(epoch + 1)
                last_save = time.monotonic()
        bar.close()
        if probe is not None:
            probe.stages.append(
                StageCost(
                    desc=self.desc,
                    planned_steps=self.epochs * len(bounds),
                    planned_epochs=self.epochs,
                    probed_steps=len(step_marks),
                    # median of the step intervals after the warm-up step: one step slowed
                    # by another process does not set the projection
                    step_seconds=(
                        float(np.median(np.diff(step_marks))) if len(step_marks) > 1 else 0.0
                    ),
                    epoch_seconds=hook_seconds,
                    probed_seconds=probe.clock() - probe_start,
                )
            )
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            self.checkpoint_path.unlink()
        self.module.eval()
        return self.history


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode for the block, the module's previous mode restored after it.

    For a whole-data pass inside a training stage (a target refresh, a k-means
    re-initialisation): batch norm uses its running statistics and dropout is off, and the
    training steps that follow find the module as they left it.
    """
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@torch.no_grad()
def batched_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    batch_size: int = 4096,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in large no-grad batches and concatenate the fp32 results."""
    outs = []
    for start in range(0, x.shape[0], batch_size):
        with autocast(x.device, autocast_dtype):
            outs.append(fn(x[start : start + batch_size]).float())
    return torch.cat(outs) if outs else x.new_zeros((0,))
