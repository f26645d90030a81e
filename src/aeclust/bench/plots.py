"""Figures of one benchmark cell: embedding, training curves, confusion matrix (PNG, Agg).

matplotlib is used through :class:`matplotlib.figure.Figure` and the Agg canvas directly, so the
global pyplot backend of the caller is never touched.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aeclust._utils import atomic_path

__all__ = [
    "confusion_figure",
    "curves_figure",
    "embedding_figure",
    "generated_grid_figure",
    "membership_histogram_figure",
    "plot_cell",
    "plot_generated_grid",
    "require_matplotlib",
    "shift_accuracy_figure",
    "shift_snapshots_figure",
]

logger = logging.getLogger(__name__)

_MAX_POINTS = 5000


#: What a figure needs and how to get it.
MISSING_MATPLOTLIB = (
    "the benchmark figures need matplotlib, part of the bench extra: "
    "pip install 'aeclust[bench]' (or run the bench with --no-plots)"
)


def require_matplotlib() -> None:
    """Raise one clear ImportError when matplotlib (the ``bench`` extra) is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError(MISSING_MATPLOTLIB)


def _new_figure(width: float, height: float) -> Any:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path


def _project_2d(z: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        z = z.reshape(len(z), -1)
    if z.shape[1] <= 2:
        out = np.zeros((len(z), 2))
        out[:, : z.shape[1]] = z
        return out, "embedding"
    try:
        import umap  # type: ignore[import-not-found]

        reducer = umap.UMAP(n_components=2, random_state=seed)
        return np.asarray(reducer.fit_transform(z)), "UMAP"
    except ImportError:
        pass
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(z), "PCA"


def embedding_figure(z: np.ndarray, labels: np.ndarray, title: str, seed: int = 0) -> Any:
    """A 2-D view of an embedding coloured by cluster (PCA, or UMAP when installed).

    At most 5,000 points are drawn (a seeded sample).
    """
    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    if len(idx) > _MAX_POINTS:
        idx = np.sort(np.random.default_rng(seed).choice(len(idx), _MAX_POINTS, replace=False))
    xy, how = _project_2d(np.asarray(z)[idx], seed)
    fig = _new_figure(6, 5.5)
    ax = fig.add_subplot(1, 1, 1)
    _, codes = np.unique(labels[idx], return_inverse=True)
    ax.scatter(xy[:, 0], xy[:, 1], c=codes, s=3, cmap="tab20", alpha=0.8, linewidths=0)
    ax.set_title(f"{title}\n{how} of the embedding, coloured by cluster", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _numeric_series(history: Any) -> dict[str, tuple[list[float], list[float]]]:
    """``{key: (x, y)}`` of every numeric key of a history (list of dicts or dict of lists)."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    if isinstance(history, Mapping):
        for key, values in history.items():
            if isinstance(values, Sequence) and not isinstance(values, str):
                ys = [float(v) for v in values if _is_real(v)]
                if ys and key != "epoch":
                    series[str(key)] = (list(range(len(ys))), ys)
        return series
    if not isinstance(history, Sequence):
        return series
    for i, rec in enumerate(history):
        if not isinstance(rec, Mapping):
            if _is_real(rec):
                xs, ys = series.setdefault("loss", ([], []))
                xs.append(float(i))
                ys.append(float(rec))
            continue
        x = float(rec.get("epoch", i)) if _is_real(rec.get("epoch", i)) else float(i)
        for key, value in rec.items():
            if key == "epoch" or not _is_real(value):
                continue
            xs, ys = series.setdefault(str(key), ([], []))
            xs.append(x)
            ys.append(float(value))
    return series


def _is_real(v: Any) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating))
        and not isinstance(v, bool)
        and math.isfinite(float(v))
    )


def _scale_groups(
    series: Mapping[str, tuple[list[float], list[float]]], ratio: float = 20.0
) -> list[dict[str, tuple[list[float], list[float]]]]:
    """Split series into groups of comparable magnitude (largest first).

    A k-means inertia in the thousands drawn on one axis with losses near 1 and a fraction of
    changed labels flattens every curve but one (CT's Fig. 4 would show nothing), so a series
    whose largest absolute value is more than ``ratio`` times below its group's largest starts a
    new group.
    """
    top = {k: max((abs(y) for y in ys), default=0.0) for k, (_, ys) in series.items()}
    groups: list[dict[str, tuple[list[float], list[float]]]] = []
    head = math.inf
    for key in sorted(series, key=lambda k: -top[k]):
        if not groups or (top[key] > 0 and head / top[key] > ratio):
            groups.append({})
            head = top[key] if top[key] > 0 else head
        groups[-1][key] = series[key]
    return groups


def curves_figure(histories: Mapping[str, Any], title: str) -> Any | None:
    """Training curves: one column per history (pretraining, clustering), every numeric key.

    Within a column, series of very different magnitude get their own panels, stacked, so that
    each curve is readable (see :func:`_scale_groups`). Returns None when no history has a
    numeric series.
    """
    panels = {name: _numeric_series(h) for name, h in histories.items() if h}
    columns = {name: _scale_groups(s) for name, s in panels.items() if s}
    if not columns:
        return None
    n_rows = max(len(groups) for groups in columns.values())
    fig = _new_figure(5.5 * len(columns), 1.2 + 2.8 * n_rows)
    for col, (name, groups) in enumerate(columns.items()):
        for row, series in enumerate(groups):
            ax = fig.add_subplot(n_rows, len(columns), row * len(columns) + col + 1)
            for key, (xs, ys) in series.items():
                ax.plot(xs, ys, label=key, linewidth=1.2)
            positive = all(min(ys) > 0 for _, ys in series.values())
            if positive and any(max(ys) / max(min(ys), 1e-12) > 50 for _, ys in series.values()):
                ax.set_yscale("log")
            if row == len(groups) - 1:
                ax.set_xlabel("epoch")
            if row == 0:
                ax.set_title(f"{title}: {name}", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, title: str) -> Any:
    """Class-by-cluster counts, clusters ordered by their Hungarian-matched class."""
    from aeclust.metrics import cluster_mapping

    classes = np.unique(y_true)
    clusters = np.unique(y_pred)
    mapping = cluster_mapping(y_true, y_pred)
    class_pos = {c: i for i, c in enumerate(classes.tolist())}
    order = sorted(
        clusters.tolist(),
        key=lambda c: (class_pos.get(mapping.get(c), len(classes)), c),
    )
    t_codes = np.searchsorted(classes, y_true)
    col_of = {c: j for j, c in enumerate(order)}
    p_codes = np.array([col_of[c] for c in np.asarray(y_pred).tolist()])
    table = np.zeros((len(classes), len(order)), dtype=np.int64)
    np.add.at(table, (t_codes, p_codes), 1)
    size = min(12.0, 3 + 0.3 * max(len(classes), len(order)))
    fig = _new_figure(size, size * 0.85)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(table, cmap="Blues", aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if max(len(classes), len(order)) <= 20:
        ax.set_xticks(range(len(order)), [str(c) for c in order], fontsize=7)
        ax.set_yticks(range(len(classes)), [str(c) for c in classes.tolist()], fontsize=7)
        top = table.max() or 1
        for i in range(table.shape[0]):
            for j in range(table.shape[1]):
                if table[i, j]:
                    colour = "white" if table[i, j] > top / 2 else "black"
                    ax.text(j, i, str(table[i, j]), ha="center", va="center", fontsize=6,
                            color=colour)  # fmt: skip
    ax.set_xlabel("cluster (ordered by matched class)")
    ax.set_ylabel("class")
    ax.set_title(f"{title}\nconfusion matrix (Hungarian matching)", fontsize=9)
    return fig


def reconstruction_figure(
    x: np.ndarray,
    reconstructions: np.ndarray,
    image_shape: tuple[int, int, int],
    title: str,
) -> Any:
    """k-DAE's Fig. 2: a few inputs and every cluster's reconstruction of them, with its error.

    Parameters
    ----------
    x : ndarray (n, D)
        Inputs (flattened images).
    reconstructions : ndarray (k, n, D)
        Each cluster autoencoder's reconstruction.
    image_shape : (C, H, W)
    title : str
    """
    k, n, _ = reconstructions.shape
    errors = ((reconstructions - x[None]) ** 2).sum(axis=2)  # (k, n)
    fig = _new_figure(1.1 * (k + 1), 1.2 * n + 0.6)
    grid = fig.subplots(n, k + 1, squeeze=False)

    def show(ax: Any, flat: np.ndarray) -> None:
        img = flat.reshape(image_shape).transpose(1, 2, 0)
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img.clip(0, 1), cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])

    for i in range(n):
        show(grid[i][0], x[i])
        grid[i][0].set_title("input", fontsize=7)
        best = int(errors[:, i].argmin())
        for j in range(k):
            ax = grid[i][j + 1]
            show(ax, reconstructions[j, i])
            ax.set_title(f"{j}: {errors[j, i]:.1f}", fontsize=7, color="red" if j == best else "k")
    fig.suptitle(f"{title}: reconstruction by each cluster (error; red = assigned)", fontsize=8)
    return fig


def membership_histogram_figure(before: np.ndarray, after: np.ndarray, title: str) -> Any:
    """CT's Fig. 3: histograms of each point's highest soft-assignment value, before and after
    fine-tuning.

    Parameters
    ----------
    before, after : ndarray (n_samples,)
        max_k G_k(z_i) with the initial and the final network and centroids.
    title : str
    """
    fig = _new_figure(9, 3.4)
    bins = np.linspace(0.0, 1.0, 41)
    for i, (name, values) in enumerate(
        (("before fine-tuning", before), ("after fine-tuning", after)), start=1
    ):
        ax = fig.add_subplot(1, 2, i)
        ax.hist(np.asarray(values, dtype=np.float64), bins=bins, color="tab:blue")
        ax.set_xlabel("highest cluster membership")
        ax.set_ylabel("points")
        ax.set_title(f"{name} (mean {float(np.mean(values)):.3f})", fontsize=9)
    fig.suptitle(title, fontsize=9)
    return fig


def plot_cell(
    folder: str | Path,
    stem: str,
    *,
    embedding: np.ndarray | None,
    labels: np.ndarray,
    y_true: np.ndarray,
    histories: Mapping[str, Any],
    title: str,
    seed: int = 0,
    extra: Mapping[str, Callable[[], Any]] | None = None,
) -> list[Path]:
    """Write the three figures of one cell; a failing figure is logged and skipped.

    Parameters
    ----------
    folder : path-like
        ``results/plots/<protocol>/<dataset>``.
    stem : str
        File name prefix, e.g. ``ae-kmeans-seed0-quick``.
    embedding : ndarray or None
        ``est.embed(X)``.
    labels, y_true : ndarray
        Clusters and classes.
    histories : mapping
        ``{"pretraining": pretrain_history_, "clustering": history_}``.
    title : str
        Figure title.
    seed : int
        Seed of the point sample and the projection.
    extra : mapping, optional
        More figures of this cell, name -> function returning a figure (or None).

    Returns
    -------
    list of Path
        The files written.
    """
    folder = Path(folder)
    written: list[Path] = []
    jobs = {
        "embedding": lambda: (
            embedding_figure(embedding, labels, title, seed) if embedding is not None else None
        ),
        "curves": lambda: curves_figure(histories, title),
        "confusion": lambda: confusion_figure(y_true, labels, title),
        **(extra or {}),
    }
    for name, make in jobs.items():
        try:
            fig = make()
            if fig is not None:
                written.append(_save(fig, folder / f"{stem}-{name}.png"))
        except Exception as exc:  # a figure must never lose a result
            logger.warning("plot %s for %s failed: %s", name, stem, exc)
    return written


def shift_accuracy_figure(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    baselines: Mapping[str, Mapping[str, float]],
    classifier_labels: Mapping[str, str],
    title: str,
) -> Any:
    """The dAE paper's Figs. 3-4: test accuracy after each target shift, one panel per classifier.

    Parameters
    ----------
    curves : mapping
        Representation label -> classifier -> array (n_splits, n_stages) of accuracies; stage 0
        is the standard AE. The mean over splits is drawn, with ± one standard deviation.
    baselines : mapping
        Representation label -> classifier -> mean accuracy of an encoder-free input (pixels),
        drawn as a dashed horizontal line.
    classifier_labels : mapping
        Classifier key -> display name (panel titles).
    title : str
    """
    # panels in the paper's order (the protocol's classifier order), then any others
    present = list(dict.fromkeys(c for per in curves.values() for c in per))
    classifiers = [c for c in classifier_labels if c in present]
    classifiers += [c for c in present if c not in classifiers]
    fig = _new_figure(4.0 * max(1, len(classifiers)), 3.6)
    for i, clf in enumerate(classifiers, start=1):
        ax = fig.add_subplot(1, len(classifiers), i)
        for label, per in curves.items():
            acc = np.asarray(per.get(clf, []), dtype=float)
            if acc.ndim != 2 or acc.size == 0:
                continue
            mean, std = acc.mean(axis=0), acc.std(axis=0)
            stages = np.arange(acc.shape[1])
            ax.plot(stages, mean, marker="o", linewidth=1.2, label=label)
            ax.fill_between(stages, mean - std, mean + std, alpha=0.2)
        for label, per in baselines.items():
            if clf in per:
                ax.axhline(per[clf], linestyle="--", linewidth=1.0, color="grey", label=label)
        ax.set_xlabel("shift (0 = standard AE)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"({chr(96 + i)}) {classifier_labels.get(clf, clf)}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def shift_snapshots_figure(
    snapshots: Sequence[np.ndarray],
    stage_labels: np.ndarray,
    y_true: np.ndarray,
    title: str,
    clusters: tuple[int, int] | None = None,
    seed: int = 0,
) -> Any:
    """CCAE's Fig. 2: two clusters' codes after each stage (2-D PCA; marker cluster, colour class).

    Parameters
    ----------
    snapshots : sequence of ndarray (n, d)
        Codes of the training data after each stage (``CCAE(keep_snapshots=True)
        .embedding_snapshots_``; stage 0 is the standard AE).
    stage_labels : ndarray (n_stages, n)
        Clusters after each stage (``CCAE.stage_labels_``).
    y_true : ndarray (n,)
        Classes, for the colours only.
    title : str
    clusters : (int, int), optional
        The two clusters to show; by default the two whose stage-0 centres are closest (the pair
        the shifts have most to separate; chosen without labels).
    seed : int
        Seed of the point sample (at most 2,000 points per panel).
    """
    from sklearn.decomposition import PCA

    stage_labels = np.asarray(stage_labels)
    y_true = np.asarray(y_true)
    if clusters is None:
        z0, l0 = np.asarray(snapshots[0], dtype=np.float64), stage_labels[0]
        ids = np.unique(l0)
        if len(ids) < 2:
            return None
        centres = np.stack([z0[l0 == c].mean(axis=0) for c in ids])
        d = ((centres[:, None] - centres[None]) ** 2).sum(-1) + np.diag(np.full(len(ids), np.inf))
        i, j = np.unravel_index(int(d.argmin()), d.shape)
        clusters = (int(ids[i]), int(ids[j]))
    _, class_codes = np.unique(y_true, return_inverse=True)
    n_stages = len(snapshots)
    fig = _new_figure(3.2 * n_stages, 3.4)
    rng = np.random.default_rng(seed)
    for s, z in enumerate(snapshots):
        ax = fig.add_subplot(1, n_stages, s + 1)
        idx = np.flatnonzero(np.isin(stage_labels[s], clusters))
        if len(idx) > 2000:
            idx = np.sort(rng.choice(idx, 2000, replace=False))
        if len(idx) >= 2:
            xy = PCA(n_components=2, random_state=seed).fit_transform(np.asarray(z)[idx])
            for c, marker in zip(clusters, ("o", "^")):
                sel = stage_labels[s][idx] == c
                ax.scatter(xy[sel, 0], xy[sel, 1], c=class_codes[idx][sel], cmap="tab10",
                           vmin=0, vmax=max(9, int(class_codes.max())), marker=marker, s=8,
                           alpha=0.7, linewidths=0)  # fmt: skip
        ax.set_title("standard AE" if s == 0 else f"after shift {s}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"{title}: clusters {clusters[0]} (o) and {clusters[1]} (^), colour = class, PCA",
        fontsize=9,
    )
    return fig


def generated_grid_figure(
    images: np.ndarray,
    image_shape: tuple[int, int, int],
    n_rows: int,
    title: str,
) -> Any:
    """ICAE's Fig. 3: images decoded from each class centroid, one cluster per row.

    Parameters
    ----------
    images : ndarray (n_rows * n_cols, D)
        Flattened images in [0, 1], row by row (e.g. ``ICAE.generate(n_per_class)``).
    image_shape : (C, H, W)
    n_rows : int
        Number of rows (clusters).
    title : str
    """
    images = np.asarray(images, dtype=np.float32)
    if n_rows < 1 or images.shape[0] % n_rows:
        raise ValueError(f"{images.shape[0]} images do not fill {n_rows} rows")
    n_cols = images.shape[0] // n_rows
    c, h, w = image_shape
    tiles = images.reshape(n_rows, n_cols, c, h, w).transpose(0, 3, 1, 4, 2)
    mosaic = tiles.reshape(n_rows * h, n_cols * w, c).clip(0, 1)
    fig = _new_figure(0.45 * n_cols + 0.6, 0.45 * n_rows + 0.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(mosaic[..., 0] if c == 1 else mosaic, cmap="gray", vmin=0, vmax=1)
    ax.set_yticks([(i + 0.5) * h for i in range(n_rows)], [str(i) for i in range(n_rows)])
    ax.set_xticks([])
    ax.set_ylabel("cluster", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.set_title(f"{title}\nimages decoded from each cluster centre", fontsize=8)
    return fig


def plot_generated_grid(
    images: np.ndarray,
    path: str | Path,
    *,
    image_shape: tuple[int, int, int],
    n_rows: int,
    title: str = "",
) -> Path:
    """Save :func:`generated_grid_figure` as a PNG at ``path`` (written atomically)."""
    return _save(generated_grid_figure(images, image_shape, n_rows, title), Path(path))


def epoch_snapshots_figure(
    snapshots: np.ndarray,
    epochs: Sequence[int],
    y_true: np.ndarray,
    title: str,
    seed: int = 0,
) -> Any | None:
    """VCC's Fig. 2 (top): the 2-D embedding after the first, middle and last epochs.

    Parameters
    ----------
    snapshots : ndarray (n_snapshots, n, 2)
        ``VCC.embedding_snapshots_`` (higher dimensions are shown by their first two axes).
    epochs : sequence of int
        ``VCC.snapshot_epochs_`` (0-based; shown 1-based).
    y_true : ndarray (n,)
        Classes, for the colours only.
    title : str
    seed : int
        Seed of the point sample (at most 5,000 points per panel).

    Returns
    -------
    Figure, or None when there is no snapshot.
    """
    snapshots = np.asarray(snapshots)
    if snapshots.ndim != 3 or snapshots.shape[0] == 0:
        return None
    _, codes = np.unique(np.asarray(y_true), return_inverse=True)
    idx = np.arange(snapshots.shape[1])
    if len(idx) > _MAX_POINTS:
        idx = np.sort(np.random.default_rng(seed).choice(idx, _MAX_POINTS, replace=False))
    fig = _new_figure(3.2 * len(snapshots), 3.4)
    for s, (z, epoch) in enumerate(zip(snapshots, epochs)):
        ax = fig.add_subplot(1, len(snapshots), s + 1)
        xy = z[idx, :2] if z.shape[1] >= 2 else np.c_[z[idx, :1], np.zeros(len(idx))]
        ax.scatter(xy[:, 0], xy[:, 1], c=codes[idx], cmap="tab10", s=2, alpha=0.6,
                   vmin=0, vmax=max(9, int(codes.max())), linewidths=0)  # fmt: skip
        ax.set_title(f"epoch {int(epoch) + 1}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}: embedding during training, colour = class", fontsize=9)
    return fig


def plot_epoch_snapshots(model: Any, y_true: np.ndarray, path: Path, title: str) -> Path | None:
    """Write :func:`epoch_snapshots_figure` of a fitted model with ``embedding_snapshots_`` and
    ``snapshot_epochs_`` (VCC) to ``path``; None when the model kept no snapshot."""
    snaps = getattr(model, "embedding_snapshots_", None)
    epochs = getattr(model, "snapshot_epochs_", None)
    if snaps is None or epochs is None:
        return None
    fig = epoch_snapshots_figure(snaps, epochs, y_true, title)
    return _save(fig, Path(path)) if fig is not None else None
