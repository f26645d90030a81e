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
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn

from aeclust import distributed
from aeclust._utils import autocast, make_generator, release_freed_memory
from aeclust.callbacks import (
    Callback,
    Checkpoint,
    CostProbe,
    EarlyStopping,
    ProgressBar,
    StageCost,
    StopTraining,
    TrainingTally,
    ambient_callbacks,
    checkpointing,
    probing,
    probing_cost,
    tally_training,
    training_callbacks,
)

logger = logging.getLogger(__name__)

#: The loop and what methods build on it; the callbacks are re-exported from
#: :mod:`aeclust.callbacks` so that a method or a script imports training from one place.
__all__ = [
    "OPTIMIZERS",
    "Callback",
    "Checkpoint",
    "CostProbe",
    "EarlyStopping",
    "ProgressBar",
    "StageCost",
    "StopTraining",
    "Trainer",
    "TrainingModule",
    "TrainingTally",
    "batch_slices",
    "batched_apply",
    "checkpointing",
    "eval_mode",
    "make_optimizer",
    "probing",
    "probing_cost",
    "tally_training",
    "training_callbacks",
]


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

    #: Whether every step's loss depends on every parameter (the plain reconstruction, DCN, CT,
    #: DKM). A data-parallel Trainer then skips DistributedDataParallel's search for unused
    #: parameters, a graph traversal per step; a module that leaves some without a gradient in
    #: a step (DEC's decoder, an autoencoder of k-DAE that won no row) keeps the default False.
    all_parameters_used: ClassVar[bool] = False

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

    def forward(self, idx: torch.Tensor, *batch: torch.Tensor) -> LossOutput:
        """:meth:`training_step`: what :class:`~torch.nn.parallel.DistributedDataParallel`
        calls when a data-parallel :class:`Trainer` wraps the module."""
        return self.training_step(idx, *batch)


class _LossModule(TrainingModule):
    """A plain network and its loss as a :class:`TrainingModule` (for :meth:`Trainer.run`
    data-parallel: DistributedDataParallel wraps a module and calls its ``forward``)."""

    def __init__(self, network: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.network = network
        self.loss_fn = loss_fn

    def training_step(self, idx: torch.Tensor, *batch: torch.Tensor) -> LossOutput:
        return self.loss_fn(idx, *batch)


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


class Trainer:
    """Minibatch training of ``module`` on tensors kept on the device.

    The loop (:meth:`fit` for a :class:`TrainingModule`, :meth:`run` for a plain module and a
    loss) knows only the module and the optimiser; progress, early stopping, checkpoints and
    timing are :class:`~aeclust.callbacks.Callback` objects it calls at fixed points.

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
    callbacks : sequence of Callback, optional
        Called at the loop's points, in order; the ones of the open
        :func:`~aeclust.callbacks.training_callbacks` blocks (:func:`checkpointing`,
        :func:`tally_training`, :func:`probing_cost`) follow, checkpoints last.
    early_stopping : EarlyStopping, optional
        Shorthand for that callback: stops the loop when the training loss stalls.
    checkpoint_path : path, optional
        Shorthand for ``Checkpoint(checkpoint_path, every=checkpoint_every)``: saves every
        ``checkpoint_every`` epochs; if the file exists when training starts, it resumes from it.
        It is removed when training finishes.
    checkpoint_every : int
    resume_key : str, optional
        Names this stage inside a :func:`checkpointing` block: when no ``checkpoint_path`` is
        given and a block is open, the stage checkpoints to ``<directory>/<resume_key>.pt``
        (time-based, the block's ``interval_s``) and resumes from it. Give it only to stages
        whose whole state is ``module``, ``optimizer``, the shuffling generator, the global RNG
        and what ``get_extra_state`` returns.
    shuffle : bool
    verbose : bool
        Shorthand for a :class:`~aeclust.callbacks.ProgressBar` over the epochs.
    desc : str
        The stage's label (progress bar, checkpoints, cost probes).
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
        callbacks: Sequence[Callback] = (),
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
        self.resume_key = resume_key
        self.shuffle = shuffle
        self.desc = desc
        self.history: list[dict[str, Any]] = []
        self.stopped_early = False
        self.n_steps = 0
        # set while training: the data, where it starts, and what the callbacks ask
        self.tensors: Sequence[torch.Tensor] = ()
        self.n_batches = 0
        self.start_epoch = 0
        self.should_stop = False
        self.cut_epoch = False
        self.probed = False  # a cost probe times this run (its epoch hooks run even when cut)
        self.clock: Callable[[], float] = time.perf_counter
        self.hook_seconds = 0.0  # the module's own epoch hooks, timed with ``clock``
        #: This trainer's own callbacks (the argument and the shorthands).
        self.callbacks: list[Callback] = list(callbacks)
        if early_stopping is not None:
            self.callbacks.append(early_stopping)
        if verbose:
            self.callbacks.append(ProgressBar())
        if checkpoint_path:
            self.callbacks.append(Checkpoint(checkpoint_path, every=checkpoint_every))
        #: The callbacks of the run in progress: its own, then those of the blocks open when it
        #: started (:func:`~aeclust.callbacks.training_callbacks`), checkpoints last.
        self.active_callbacks: list[Callback] = []

    @property
    def early_stopping(self) -> EarlyStopping | None:
        """The early-stopping callback, if any."""
        return next((c for c in self.callbacks if isinstance(c, EarlyStopping)), None)

    def _start_callbacks(self) -> None:
        self.active_callbacks = list(self.callbacks)
        ambient_callbacks(self)  # appends to active_callbacks, innermost block first
        if probing():  # a cost probe saves nothing and resumes nothing
            self.active_callbacks = [
                c for c in self.active_callbacks if not isinstance(c, Checkpoint)
            ]
        if distributed.sharded() and not distributed.is_main_process():
            # progress shows in the first process only
            self.active_callbacks = [
                c for c in self.active_callbacks if not isinstance(c, ProgressBar)
            ]
        # checkpoints last: they save what the other callbacks decided at the epoch's end
        self.active_callbacks.sort(key=lambda c: isinstance(c, Checkpoint))

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
            history = self._loop(tensors, self._step_function(module), module)
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
        if distributed.sharded():
            loss_fn = self._step_function(_LossModule(self.module, loss_fn))
        return self._loop(tensors, loss_fn, None)

    def _step_function(self, module: TrainingModule) -> LossFn:
        """``module.training_step``; in a data-parallel fit (:func:`aeclust.distributed.sharded`)
        the module wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`, whose
        backward averages the gradients over the processes.

        Buffers are not broadcast: a method's per-row state (DEC's target P, k-DAE's winners)
        belongs to its process's rows. ``find_unused_parameters`` unless the module says every
        step uses all its parameters (:attr:`TrainingModule.all_parameters_used`): a step may
        leave some without a gradient (DEC's decoder, an autoencoder of k-DAE that won no row).
        """
        if not distributed.sharded():
            return module.training_step
        from torch.nn.parallel import DistributedDataParallel

        device = next(module.parameters()).device
        with warnings.catch_warnings():
            # torch 2.13 deprecates broadcast_buffers but says to keep broadcast_buffers=False
            # for process-local buffers until its replacement exists (init_sync_buffers)
            warnings.filterwarnings(
                "ignore", message=".*broadcast_buffers.*", category=FutureWarning
            )
            return DistributedDataParallel(
                module,
                device_ids=[device] if device.type == "cuda" else None,
                broadcast_buffers=False,
                find_unused_parameters=not module.all_parameters_used,
            )

    def _batch_bounds(self, n: int, device: torch.device) -> list[tuple[int, int]]:
        """The epoch's minibatches as (start, stop) positions in the shuffled rows.

        In one process: :func:`batch_slices`. Data-parallel, every process must make the same
        number of steps (each step all-reduces the gradients): as many as one process would make
        on all the rows, each process's rows split into that many near-equal batches, so the
        global batch is ``batch_size`` as in one process.
        """
        if not distributed.sharded():
            return batch_slices(n, self.batch_size)
        n_total = int(distributed.total(n, device=device))
        n_batches = len(batch_slices(n_total, self.batch_size))
        if n < n_batches:
            raise ValueError(
                f"{self.desc}: {n} rows in this process for {n_batches} steps an epoch; use "
                "fewer processes or a larger batch_size"
            )
        return [(n * i // n_batches, n * (i + 1) // n_batches) for i in range(n_batches)]

    def _timed(self, hook: Callable[..., Any], *args: Any) -> Any:
        start = self.clock()
        try:
            return hook(*args)
        finally:
            self.hook_seconds += self.clock() - start

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
        bounds = self._batch_bounds(n, device)
        self.tensors, self.n_batches = tensors, len(bounds)
        self.start_epoch = 0
        self._start_callbacks()
        callbacks = self.active_callbacks
        for callback in callbacks:  # a Checkpoint may move start_epoch on
            callback.on_fit_start(self)
        for epoch in range(self.start_epoch, self.epochs):
            self.module.train()
            for callback in callbacks:
                callback.on_epoch_start(self, epoch)
            if hooks is not None:
                self._timed(hooks.on_epoch_start, epoch)
            if self.shuffle:
                perm = torch.randperm(n, generator=self.generator).to(device, non_blocking=True)
            else:
                perm = torch.arange(n, device=device)
            total = torch.zeros((), device=device)
            parts_total: dict[str, torch.Tensor] = {}
            converged = cut = False
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
                self.cut_epoch = False
                for callback in callbacks:
                    callback.on_step_end(self, stop - start)
                weight = float(stop - start)
                total += loss.detach().float() * weight
                if self.cut_epoch:  # a callback ends the epoch here (a cost probe)
                    converged = cut = True
                    start = stop
                    break
                for key, value in parts.items():
                    acc = parts_total.setdefault(key, torch.zeros((), device=device))
                    acc += value.detach().float() * weight
            seen_rows = torch.tensor(float(start if converged else n), device=device)
            sums = torch.stack([total, seen_rows, *parts_total.values()])
            # one host sync per epoch; in a data-parallel fit, the sums over every process
            total, seen, *parts = distributed.all_reduce_sum(sums.double()).tolist()
            if seen == 0:  # stopped before the epoch's first step: nothing to record
                break
            record: dict[str, Any] = {"epoch": epoch, "loss": total / seen}
            for key, value in zip(parts_total, parts, strict=True):
                record[key] = value / seen
            if converged:
                record["converged"] = True
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(
                    f"{self.desc}: the loss became {record['loss']} at epoch {epoch}; "
                    "lower the learning rate or check the input scaling"
                )
            stop_now = converged
            # a StopTraining epoch skips the module's epoch end; a probed one times it
            if hooks is not None and (self.probed or cut or not converged):
                stop_now = bool(self._timed(hooks.on_epoch_end, epoch, record)) or stop_now
            self.history.append(record)
            self.should_stop = stop_now
            for callback in callbacks:
                self.should_stop = bool(callback.on_epoch_end(self, record)) or self.should_stop
            if self.should_stop:
                break
        for callback in callbacks:
            callback.on_fit_end(self)
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


#: Batches of a CPU :func:`batched_apply` between two returns of freed memory to the system.
TRIM_EVERY = 8


@torch.no_grad()
def batched_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    batch_size: int = 4096,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in large no-grad batches and concatenate the fp32 results.

    On the CPU the heap's freed pages go back to the system every :data:`TRIM_EVERY` batches
    (:func:`aeclust._utils.release_freed_memory`), so the pass holds a few batches' activations
    however many rows it covers; after every batch for rows read from a file
    (:class:`aeclust.rows.DiskRows`), where memory is what matters. Not after every batch in
    memory: the pages given back are faulted in again by the next batch, which cost 10-15 % of a
    pass through a 2000-wide layer.
    """
    outs = []
    trim_every = TRIM_EVERY if isinstance(x, torch.Tensor) else 1
    on_cpu = x.device.type == "cpu"
    for i, start in enumerate(range(0, x.shape[0], batch_size)):
        with autocast(x.device, autocast_dtype):
            outs.append(fn(x[start : start + batch_size]).float())
        if on_cpu and i % trim_every == trim_every - 1:
            release_freed_memory()
    return torch.cat(outs) if outs else x.new_zeros((0,))
