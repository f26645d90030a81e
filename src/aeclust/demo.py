"""``make demo``: k-means on the pixels beside two deep methods, on scikit-learn's digits.

Runs offline in about two minutes on two CPU cores (the digits ship with scikit-learn), prints
ACC / NMI / ARI and the time of each method, writes a figure of N2D's embedding and prints the
next commands to try.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from aeclust.datasets import load_dataset
from aeclust.methods import N2D, AEKMeans, KMeans
from aeclust.metrics import evaluate, format_metrics

#: AE+k-means in the demo: the small convolutional autoencoder on the 8x8 images.
#: (On digits, seeds 0-2 gave ACC 0.806 / 0.782 / 0.800 against k-means' 0.792 / 0.793 / 0.790
#: before inputs were centred; seed 0 with ``center_inputs="auto"``, which centres the digits:
#: 0.810. The d-500-500-2000-10 MLP does no better than k-means on this small set.)
AE_KMEANS_PARAMS = {"autoencoder": "conv", "pretrain_epochs": 100, "batch_size": 64}
#: N2D in the demo: its defaults except 100 pretraining epochs instead of 1000, to stay within
#: two minutes (on digits, seed 0, 2 threads: ACC 0.940 with centred inputs, 0.891 before; the
#: layout depends on the thread count: one thread gave 0.818 and seeds 1-2 0.948 / 0.806).
N2D_PARAMS = {"pretrain_epochs": 100}

NEXT_STEPS = """\
Next:
  aeclust cluster --dataset usps --method n2d --seed 0      # a benchmark data set
  aeclust cluster my_data.npy --method n2d --n-clusters 5   # your own data (.npy/.csv/images)
  aeclust methods                                           # every method and its paper
  aeclust report | less                                     # every benchmark against its paper
"""


def main(seed: int = 0, figure: str | Path = "results/demo-digits-n2d.png") -> dict[str, dict]:
    """Cluster the digits with k-means, AE+k-means and N2D; print their metrics; draw N2D's
    embedding to ``figure``.

    Returns
    -------
    dict
        Method name -> its metrics (``acc``, ``nmi``, ``ari``) and ``seconds``.
    """
    from aeclust.bench.plots import embedding_figure, require_matplotlib

    require_matplotlib()  # the figure at the end: say so now, not after two minutes
    data = load_dataset("digits")
    print(f"digits: {data.n_samples} images of {data.image_shape}, {data.n_classes} classes")
    k = data.n_classes
    models = {
        "k-means (pixels)": KMeans(k, n_init=20, random_state=seed),
        "AE+k-means": AEKMeans(
            k, image_shape=data.image_shape, random_state=seed, device="cpu", **AE_KMEANS_PARAMS
        ),
        "N2D": N2D(k, random_state=seed, device="cpu", **N2D_PARAMS),
    }
    results: dict[str, dict] = {}
    for name, model in models.items():
        start = time.perf_counter()
        labels = model.fit_predict(data.x)
        seconds = time.perf_counter() - start
        scores = evaluate(data.y, labels)
        results[name] = {**scores, "seconds": seconds}
        metrics = format_metrics(scores, keys=("acc", "nmi", "ari"))
        print(f"{name:<17} {metrics}   ({seconds:.1f} s)")

    n2d = models["N2D"]
    path = Path(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # UMAP's note that a seed runs it on one thread
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        fig = embedding_figure(n2d.manifold_, n2d.labels_, "N2D on digits", seed=seed)
    fig.savefig(path, format="png", bbox_inches="tight")
    print(f"N2D's embedding, coloured by its clusters: {path}")
    print(NEXT_STEPS, end="")
    return results


if __name__ == "__main__":
    main()
