"""Throughput benchmark: aeclust against a bare hand-written torch loop, in fp32 and bf16.

One call of :func:`run_speed` (``aeclust bench --speed``) measures, on one machine and in one
session, so that the figures can be compared with each other:

``pretrain``
    Samples per second of :func:`aeclust.pretrain.pretrain_autoencoder` on the d-500-500-2000-10
    MLP autoencoder (MSE, Adam lr 1e-3) at the given batch size, beside the shortest correct torch
    loop training the same architecture on the same data (:func:`bare_autoencoder_loop`; plain
    ``torch.optim.Adam``, autocast when bf16). The reference figure stored with every row is the
    bare loop **in fp32**, the baseline the issue measures against; the bare loop in the row's own
    precision is stored in ``config_json``.
``cluster``
    Each method's clustering phase (its ``fit`` after the shared pretraining, which is cached and
    not timed): training samples per second, counted over every optimisation step the method
    takes (:func:`aeclust.training.tally_training`) and divided by the phase's whole wall time,
    so target refreshes, k-means and kNN graphs count against it. The reference is a bare fp32
    loop doing the same work per step on a copy of the method's fitted networks, same batch
    size: for k-DAE the k autoencoders on every row and eq. 1's min error, for DAMIC those and
    the gate (eq. 5), for ICAE its augmented views, MMD, reconstruction and Sobel terms; for the
    others, which train one autoencoder (on a loss that costs no more than its reconstruction),
    plain reconstruction on ``autoencoder_``. The ratio is then what the method's loop, hooks
    and whole-data passes cost beyond the arithmetic of its steps.
``primitive``
    Wall seconds of k-means on a 70,000 x 10 embedding (one run and 20 restarts) and of the exact
    10-NN graph of 70,000 x 784 MNIST (random data of that shape when MNIST is not available).

Timings take the best of ``repeats`` after a warm-up. Run it on a quiet machine: two torch jobs
on the 2-core test machine slow each other several-fold.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from aeclust._utils import autocast, resolve_device, resolve_precision
from aeclust.bench.env import git_commit, machine_info
from aeclust.bench.store import DEFAULT_DB, ResultStore, utc_now
from aeclust.diagnostics import DegenerateClusteringWarning

__all__ = [
    "SPEED_METHODS",
    "SpeedRow",
    "SpeedRunError",
    "bare_autoencoder_loop",
    "bare_loop",
    "run_speed",
]

logger = logging.getLogger(__name__)

#: Short clustering phases for the throughput table (not for accuracy): enough steps for a
#: stable rate, shared pretraining of one epoch (cached, untimed). Shortened in the number of
#: epochs or rounds only, never inside one, so that the share of whole-data work (k-means,
#: kNN graphs, target refreshes) per step is the default's: CCAE runs one round of its default
#: 25 epochs. ``n_samples`` caps the data for the slow convolutional ICAE.
SPEED_METHODS: dict[str, dict[str, Any]] = {
    "ae-kmeans": {},
    "dec": {"max_iter": 400, "tol": 0.0},
    "idec": {"max_iter": 400, "tol": 0.0},
    "dcn": {"epochs": 3},
    "dkm": {"n_alpha_steps": 1, "epochs_per_alpha": 3},
    "ct": {"epochs": 3},
    "kdae": {"cluster_pretrain_epochs": 1, "epochs": 3, "n_init": 10, "pretrain_patience": None},
    "damic": {"cluster_pretrain_epochs": 1, "epochs": 3, "n_init": 10, "pretrain_patience": None},
    "ccae": {"autoencoder": "mlp", "n_shifts": 1, "shift": "neighbours"},
    "vcc": {"epochs": 3},
    "icae": {"epochs": 1, "n_samples": 2000},
}

_SHARED_PRETRAIN = {"pretrain_epochs": 1}
_MLP = [500, 500, 2000, 10]


class SpeedRunError(RuntimeError):
    """Some methods' clustering phases failed during :func:`run_speed`; the rest were measured.

    Attributes
    ----------
    failures : dict of str to str
        Method name to ``"ExceptionType: message"``.
    rows : list of SpeedRow
        The rows that were measured (and stored).
    """

    def __init__(self, failures: dict[str, str], rows: list[SpeedRow]) -> None:
        self.failures = dict(failures)
        self.rows = list(rows)
        listed = "; ".join(f"{name}: {why}" for name, why in self.failures.items())
        super().__init__(
            f"speed of {len(self.failures)} method(s) failed ({listed}); "
            f"the other {len(self.rows)} row(s) are stored"
        )


@dataclass
class SpeedRow:
    """One throughput measurement (a row of the ``speed`` table)."""

    phase: str
    name: str
    precision: str
    seconds: float
    batch_size: int | None = None
    n_samples: int | None = None
    samples_per_s: float | None = None
    reference_samples_per_s: float | None = None
    reference: str | None = None
    config: dict[str, Any] = field(default_factory=dict)


def bare_loop(
    parameters: Any,
    loss_of_batch: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    dtype: torch.dtype | None = None,
) -> None:
    """The shortest correct torch loop minimising ``loss_of_batch`` over minibatches of ``x``.

    Plain ``torch.optim.Adam`` (lr 1e-3, torch's default kernel), a fresh permutation per epoch,
    autocast to ``dtype`` when given: no callbacks, no records, no whole-data passes.
    """
    opt = torch.optim.Adam(parameters, lr=1e-3)
    n = x.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, device=x.device)
        for i in range(0, n, batch_size):
            xb = x[perm[i : i + batch_size]]
            with autocast(x.device, dtype):
                loss = loss_of_batch(xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _sync(x.device)


def bare_autoencoder_loop(
    ae: torch.nn.Module,
    x: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    dtype: torch.dtype | None,
) -> None:
    """The reference: the shortest correct torch loop training ``ae`` to reconstruct ``x``.

    :func:`bare_loop` on the MSE; ``ae(x)`` must return ``(z, x_hat)``.
    """
    ae.train()
    bare_loop(
        ae.parameters(),
        lambda xb: F.mse_loss(ae(xb)[1].float(), xb),
        x,
        epochs=epochs,
        batch_size=batch_size,
        dtype=dtype,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_rate(fn: Callable[[], Any], n_items: int, repeats: int, device: torch.device) -> float:
    """Items per second of ``fn`` (best of ``repeats`` after one warm-up call)."""
    fn()
    best = 0.0
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = max(best, n_items / (time.perf_counter() - start))
    return best


def _best_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


# ---------------------------------------------------------------------------------------------
# The three phases
# ---------------------------------------------------------------------------------------------


def measure_pretraining(
    x: torch.Tensor, precisions: Sequence[str], *, batch_size: int, epochs: int, repeats: int
) -> list[SpeedRow]:
    """aeclust's pretraining against the bare loop (see the module docstring)."""
    from aeclust.nn import MLPAutoencoder
    from aeclust.pretrain import PretrainConfig, pretrain_autoencoder

    device = x.device
    dims = [x.shape[1], *_MLP]
    n = x.shape[0] * epochs

    def fresh() -> torch.nn.Module:
        return MLPAutoencoder(dims).to(device)

    def bare(dtype: torch.dtype | None) -> float:
        return _best_rate(
            lambda: bare_autoencoder_loop(
                fresh(), x, epochs=epochs, batch_size=batch_size, dtype=dtype
            ),
            n,
            repeats,
            device,
        )

    bare_fp32 = bare(None)
    config = PretrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3)
    rows = []
    for precision in precisions:
        dtype = resolve_precision(precision, device)
        ours = _best_rate(
            lambda dtype=dtype, precision=precision: pretrain_autoencoder(
                fresh(), x, config, autocast_dtype=dtype, precision=precision
            ),
            n,
            repeats,
            device,
        )
        same = bare_fp32 if dtype is None else bare(dtype)
        rows.append(
            SpeedRow(
                phase="pretrain",
                name="autoencoder",
                precision=precision,
                seconds=n / ours,
                batch_size=batch_size,
                n_samples=x.shape[0],
                samples_per_s=ours,
                reference_samples_per_s=bare_fp32,
                reference="bare torch loop, fp32",
                config={
                    "architecture": dims,
                    "epochs": epochs,
                    "bare_same_precision_samples_per_s": same,
                },
            )
        )
        logger.info("pretrain %s: %.0f samples/s (bare fp32 %.0f)", precision, ours, bare_fp32)
    return rows


# The same work as a method's training step, written as a bare loop (issue 33: a ratio against
# plain reconstruction would charge k-DAE for its k networks and ICAE for its views). Each
# returns the parameters, the loss of a batch and what the reference is; it trains a copy of the
# method's fitted networks.
Reference = tuple[list[torch.nn.Parameter], Callable[[torch.Tensor], torch.Tensor], str]


def _k_errors(models: torch.nn.Module, xb: torch.Tensor) -> torch.Tensor:
    return (models(xb).float() - xb.unsqueeze(0)).square().sum(dim=-1)  # (k, m)


def _kdae_reference(est: Any) -> Reference:
    models = copy.deepcopy(est.autoencoders_).train()
    return (
        list(models.parameters()),
        lambda xb: _k_errors(models, xb).min(dim=0).values.mean(),
        "bare torch loop, fp32: the k batched autoencoders on every row, eq. 1's min error",
    )


def _damic_reference(est: Any) -> Reference:
    models = copy.deepcopy(est.autoencoders_).train()
    gate = copy.deepcopy(est.gate_).train()

    def loss(xb: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(gate(xb).float(), dim=1)
        return -torch.logsumexp(log_p - _k_errors(models, xb).t(), dim=1).mean()

    return (
        [*models.parameters(), *gate.parameters()],
        loss,
        "bare torch loop, fp32: the k batched autoencoders and the gate, eq. 5",
    )


def _icae_reference(est: Any) -> Reference:
    ae = copy.deepcopy(est.autoencoder_).train()
    shape = tuple(est.image_shape_)
    views = int(est.n_views) if est.augment else 0
    centres = torch.from_numpy(est.cluster_centers_)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    sobel = torch.stack([sobel, sobel.T])[:, None]
    angle = math.radians(float(est.rotation))
    scale, shift = tuple(est.scale), float(est.shift)

    def augment(images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        a = (torch.rand(n) * 2 - 1) * angle
        s = torch.empty(n).uniform_(*scale)
        t = (torch.rand(n, 2) * 2 - 1) * 2 * shift
        theta = torch.stack(
            [s * a.cos(), -s * a.sin(), t[:, 0], s * a.sin(), s * a.cos(), t[:, 1]], dim=1
        ).view(n, 2, 3)
        grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, align_corners=False)

    def mmd(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([z, y])
        d2 = torch.cdist(joint, joint).square()
        n = joint.shape[0]
        base = d2.detach().sum() / (n * n - n)
        kernel = sum(torch.exp(-d2 / (base * 2.0**i)) for i in range(-2, 3))
        m = z.shape[0]
        return kernel[:m, :m].mean() + kernel[m:, m:].mean() - 2 * kernel[:m, m:].mean()

    def edges(images: torch.Tensor) -> torch.Tensor:
        return F.conv2d(images.reshape(-1, 1, *shape[1:]), sobel.to(images), padding=1)

    radius = math.sqrt(est.embedding_dim) if est.latent_radius is None else est.latent_radius
    a = float(est.aug_weight) * float(radius) ** 2  # Loss1 at the paper's scale, as ICAEModule
    b, c, d = float(est.mmd_weight), float(est.rec_weight), float(est.sobel_weight)
    noise = float(est.latent_noise)

    def loss(xb: torch.Tensor) -> torch.Tensor:
        m = xb.shape[0]
        images = xb.view(m, *shape)
        inputs = [images] + ([augment(images.repeat(views, 1, 1, 1))] if views else [])
        z_all = F.normalize(ae.encode(torch.cat(inputs).flatten(1) * 2 - 1).float(), dim=1)
        chain = z_all.view(views + 1, m, -1)
        aug = (chain[1:] - chain[:-1]).square().sum(dim=2).sum(dim=0).mean()
        targets = centres.to(z_all).repeat(-(-z_all.shape[0] // centres.shape[0]), 1)
        z = z_all[:m]
        out = ae.decode(torch.cat([z, z + noise * torch.randn_like(z)])).float()
        target = xb * 2 - 1
        rec = F.mse_loss(out[:m], target)
        sob = 2 * F.mse_loss(edges(out[m:]), edges(target))  # MSE of G_x plus MSE of G_y
        return a * aug + b * mmd(z_all, targets[: z_all.shape[0]]) + c * rec + d * sob

    return (
        list(ae.parameters()),
        loss,
        f"bare torch loop, fp32: ICAE's step ({views} augmented views, MMD, reconstruction, "
        "Sobel of the noisy code) on its network",
    )


#: Methods whose training step is not their autoencoder's reconstruction.
_SAME_WORK_REFERENCES: dict[str, Callable[[Any], Reference]] = {
    "kdae": _kdae_reference,
    "damic": _damic_reference,
    "icae": _icae_reference,
}


#: Repeats of a bare reconstruction loop shared by several methods (at least): it is the
#: denominator of every ratio on that network, so it is measured once and more carefully.
SHARED_REFERENCE_REPEATS = 5


def _reference_rate(
    name: str,
    est: Any,
    x: torch.Tensor,
    repeats: int,
    shared: dict[tuple[Any, ...], tuple[float, str]] | None = None,
) -> tuple[float, str] | None:
    """Samples per second of the bare loop doing the method's per-step work, and what it is.

    The methods whose step is plain reconstruction on their autoencoder (DEC, IDEC, DCN, DKM,
    CT, ...) share one measurement per network, batch size and data (``shared``): measured per
    method, the same loop on the same network had ranged over 4,034-6,547 samples/s within one
    run (benchmarks/notes/30-clustering-phase-speed.md), which moved their ratios by as much.
    """
    from aeclust.nn import Autoencoder

    batch = int(getattr(est, "batch_size", 256))
    build = _SAME_WORK_REFERENCES.get(name)
    if build is not None:
        params, loss, what = build(est)

        def run() -> None:
            bare_loop(params, loss, x, epochs=1, batch_size=batch)

    else:
        ae = getattr(est, "autoencoder_", None)
        if not isinstance(ae, Autoencoder):
            return None
        what = "bare torch loop, fp32, reconstruction on the method's autoencoder"
        try:
            network = json.dumps(ae.config(), sort_keys=True)
        except NotImplementedError:  # a network without a config: measured for itself
            shared = None
        key = (network, batch, tuple(x.shape), str(x.device)) if shared is not None else ()
        if shared is not None and key in shared:
            return shared[key]

        def run() -> None:
            bare_autoencoder_loop(copy.deepcopy(ae), x, epochs=1, batch_size=batch, dtype=None)

        if shared is not None:
            what += " (one measurement shared by the methods on this network)"
            rate = _best_rate(run, x.shape[0], max(repeats, SHARED_REFERENCE_REPEATS), x.device)
            shared[key] = (rate, what)
            return shared[key]
    return _best_rate(run, x.shape[0], repeats, x.device), what


def measure_methods(
    x: np.ndarray,
    n_clusters: int,
    image_shape: tuple[int, ...] | None,
    methods: Sequence[str],
    precisions: Sequence[str],
    *,
    device: torch.device,
    repeats: int,
    cache_dir: Path,
    references: dict[tuple[Any, ...], tuple[float, str]] | None = None,
) -> list[SpeedRow]:
    """Each method's clustering phase in each precision (see the module docstring).

    ``references`` holds the bare-loop measurements shared by methods on one network (see
    :func:`_reference_rate`); pass the same dict to every call of one speed session, which
    measures its methods one call at a time."""
    from aeclust.methods import METHODS
    from aeclust.training import tally_training

    rows = []
    shared_references = {} if references is None else references
    for name in methods:
        params = dict(SPEED_METHODS[name])
        n_max = params.pop("n_samples", None)
        data = x[:n_max] if n_max else x
        cls = METHODS[name]
        valid = cls().get_params()
        base = {k: v for k, v in _SHARED_PRETRAIN.items() if k in valid}
        if valid.get("autoencoder") == "mlp" and name != "ccae":
            base["autoencoder"] = _MLP
        if "image_shape" in valid and image_shape is not None:
            base["image_shape"] = tuple(image_shape)
        reference = None
        for precision in precisions:
            est = cls(
                **base,
                **params,
                n_clusters=n_clusters,
                random_state=0,
                device=str(device),
                precision=precision,
                **({"pretrain_cache": str(cache_dir)} if "pretrain_cache" in valid else {}),
            )
            if hasattr(est, "pretrain_epochs"):
                est.pretrain(data)  # cached: the timed fit below starts from it

            def fit(est: Any = est, data: np.ndarray = data) -> Any:
                # a cell of a few epochs may well end degenerate: timing, not a result
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DegenerateClusteringWarning)
                    return est.fit(data)

            fit()  # warm-up (also fills per-method caches such as compiled kernels)
            best, samples = float("inf"), 0
            for _ in range(repeats):
                with tally_training() as tally:
                    _sync(device)
                    start = time.perf_counter()
                    fit()
                    _sync(device)
                    seconds = time.perf_counter() - start
                if seconds < best:
                    best, samples = seconds, tally.samples
            if reference is None:
                reference = _reference_rate(
                    name, est, torch.from_numpy(data).to(device), repeats, shared_references
                )
            rate = samples / best if samples else None
            rows.append(
                SpeedRow(
                    phase="cluster",
                    name=name,
                    precision=precision,
                    seconds=best,
                    batch_size=int(getattr(est, "batch_size", 0)) or None,
                    n_samples=data.shape[0],
                    samples_per_s=rate,
                    reference_samples_per_s=None if reference is None else reference[0],
                    reference=None if reference is None else reference[1],
                    config={"params": {**base, **params}, "training_samples": samples},
                )
            )
            logger.info("%s %s: %.2f s, %s samples/s", name, precision, best, rate)
    return rows


def measure_primitives(
    mnist: np.ndarray | None, *, device: torch.device, repeats: int, n_samples: int = 70_000
) -> list[SpeedRow]:
    """k-means on 70k x 10 and the 10-NN graph of 70k x 784 (see the module docstring)."""
    from aeclust.primitives import kmeans, knn

    gen = torch.Generator().manual_seed(0)
    if mnist is not None:
        x = torch.from_numpy(mnist[:n_samples]).to(device)
        source = f"MNIST ({x.shape[0]:,} x 784)"
    else:
        x = torch.rand(n_samples, 784, generator=gen).to(device)
        source = f"uniform random {n_samples:,} x 784 (MNIST not available)"
    size = f"{x.shape[0] // 1000}k" if x.shape[0] >= 1000 else str(x.shape[0])
    # A 10-D embedding with MNIST's structure: its top-10 principal components.
    centred = x - x.mean(dim=0)
    _, _, v = torch.pca_lowrank(centred, q=10, center=False)
    z = (centred @ v).contiguous()
    rows = []
    for n_init in (1, 20):
        seconds = _best_seconds(
            lambda n_init=n_init: kmeans(
                z, 10, n_init=n_init, generator=torch.Generator(device=device).manual_seed(0)
            ),
            repeats,
            device,
        )
        rows.append(
            SpeedRow(
                phase="primitive",
                name=f"kmeans {size} x 10, k=10, n_init={n_init}",
                precision="fp32",
                seconds=seconds,
                n_samples=z.shape[0],
                config={"data": f"top-10 principal components of {source}"},
            )
        )
    seconds = _best_seconds(lambda: knn(x, 10), max(1, repeats - 1), device)
    rows.append(
        SpeedRow(
            phase="primitive",
            name=f"exact 10-NN graph {size} x 784",
            precision="bf16 screen + fp32 re-rank"
            if device.type == "cpu"
            else "fp32",  # knn's screening="auto"
            seconds=seconds,
            n_samples=x.shape[0],
            config={"data": source},
        )
    )
    return rows


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def run_speed(
    *,
    dataset: str = "mnist_test",
    methods: Sequence[str] | None = None,
    precisions: Sequence[str] = ("fp32", "bf16"),
    phases: Sequence[str] = ("pretrain", "cluster", "primitive"),
    batch_size: int = 256,
    repeats: int = 2,
    device: str = "auto",
    db: str | Path = DEFAULT_DB,
    data_home: str | None = None,
    primitive_samples: int = 70_000,
    command: str = "",
    on_row: Callable[[SpeedRow], None] | None = None,
) -> list[SpeedRow]:
    """Measure the throughput table and store it as one session of the ``speed`` table.

    Parameters
    ----------
    dataset : str
        Data for the pretraining and clustering phases (default ``mnist_test``, 10,000 x 784).
    methods : sequence of str, optional
        Methods of :data:`SPEED_METHODS` (default: all).
    precisions : sequence of {"fp32", "bf16", "auto"}
    phases : sequence of {"pretrain", "cluster", "primitive"}
    batch_size : int
        Batch size of the pretraining comparison.
    repeats : int
        Timed repetitions per figure (the best is kept).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    db : path
        Results database.
    data_home : str, optional
        Dataset folder (default ``$AECLUST_DATA``).
    primitive_samples : int
        Rows of the primitives' data (70,000: all of MNIST).
    command : str
        The command line, stored with the rows.
    on_row : callable, optional
        Called with each row as soon as it is measured.

    Returns
    -------
    list of SpeedRow

    Raises
    ------
    SpeedRunError
        After every phase has run, when a method's clustering phase failed; the other methods'
        rows are stored and in its ``rows``.
    """
    from aeclust.datasets import load_dataset

    for p in precisions:
        resolve_precision(p, torch.device("cpu"))  # validates the name
    unknown = sorted(set(phases) - {"pretrain", "cluster", "primitive"})
    if unknown:
        raise ValueError(f"unknown speed phase(s) {unknown}; valid: pretrain, cluster, primitive")
    methods = list(SPEED_METHODS) if methods is None else list(methods)
    bad = [m for m in methods if m not in SPEED_METHODS]
    if bad:
        raise ValueError(
            f"no speed configuration for method(s) {bad}; valid: {list(SPEED_METHODS)}"
        )
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    dev = resolve_device(device)
    data = load_dataset(dataset, data_home=data_home)
    x = torch.from_numpy(data.x).to(dev)
    session = utc_now()
    machine, commit = machine_info(), git_commit()
    device_name = str(dev) + (f" ({machine.get('gpu')})" if dev.type == "cuda" else "")
    rows: list[SpeedRow] = []
    failures: dict[str, str] = {}

    with ResultStore(db) as store:

        def keep(batch: list[SpeedRow]) -> None:
            for row in batch:
                store.insert_speed(
                    {
                        "session": session,
                        "phase": row.phase,
                        "name": row.name,
                        "precision": row.precision,
                        "batch_size": row.batch_size,
                        "n_samples": row.n_samples,
                        "seconds": row.seconds,
                        "samples_per_s": row.samples_per_s,
                        "reference_samples_per_s": row.reference_samples_per_s,
                        "reference": row.reference,
                        "device": device_name,
                        "git_commit": commit,
                        "machine_json": machine,
                        "config_json": {"dataset": data.name, **row.config},
                        "command": command,
                        "measured_at": utc_now(),
                    }
                )
                rows.append(row)
                if on_row is not None:
                    on_row(row)

        if "pretrain" in phases:
            keep(
                measure_pretraining(x, precisions, batch_size=batch_size, epochs=2, repeats=repeats)
            )
        if "cluster" in phases:
            assert data.n_classes is not None
            # one table for the session: each method is measured in its own call (so that a
            # failure costs only its rows), the shared bare loops must outlive the call
            references: dict[tuple[Any, ...], tuple[float, str]] = {}
            with tempfile.TemporaryDirectory(prefix="aeclust-speed-") as cache:
                for name in methods:
                    try:
                        measured = measure_methods(
                            data.x,
                            data.n_classes,
                            data.image_shape,
                            [name],
                            precisions,
                            device=dev,
                            repeats=repeats,
                            cache_dir=Path(cache),
                            references=references,
                        )
                    except Exception as exc:  # one broken method must not cost the others' rows
                        failures[name] = f"{type(exc).__name__}: {exc}"
                        logger.error("speed of %s failed: %s", name, failures[name])
                        continue
                    keep(measured)
        if "primitive" in phases:
            try:
                mnist = load_dataset("mnist", data_home=data_home).x
            except Exception as exc:  # a missing optional data set must not stop the table
                logger.warning("MNIST not available (%s): primitives on random data", exc)
                mnist = None
            keep(
                measure_primitives(mnist, device=dev, repeats=repeats, n_samples=primitive_samples)
            )
    if failures:
        raise SpeedRunError(failures, rows)
    return rows
