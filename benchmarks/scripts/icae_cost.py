"""How much compute ICAE's full protocol needs: floating-point operations per sample and epoch.

Counts, with ``torch.utils.flop_counter.FlopCounterMode``, the operations of one training epoch
of :class:`aeclust.ICAE` on random 28x28 images (forward and backward of every view, the final
embedding pass included) for the network of the full protocol (channels 32-512, 4 augmented
views) and for the ``--quick`` one (16-256, 1 view), and multiplies them out to the paper's
setting: 400 epochs of the 70,000 MNIST images per seed. Prints the total and the wall time it
implies at a few sustained rates (the AMX CPU measured ICAE at about 0.14 TFLOP/s in fp32: 51
samples/s in BENCHMARKS.md's throughput table).

Usage (from the repository root)::

    .venv/bin/python benchmarks/scripts/icae_cost.py

It trains one epoch of each network on 200 random images (a few seconds on a CPU).
"""

from __future__ import annotations

import numpy as np
from torch.utils.flop_counter import FlopCounterMode

from aeclust.methods.icae import ICAE

N_SAMPLES = 200
PAPER_EPOCHS = 400
PAPER_N = 70_000
#: sustained rates (TFLOP/s) to translate operations into hours
RATES = {"2-core CPU, fp32 (measured 0.14)": 0.14, "GPU at 30 TFLOP/s": 30.0, "GPU at 100": 100.0}


def flops_per_sample_epoch(channels: tuple[int, ...], n_views: int) -> float:
    """Operations of one ICAE training epoch divided by the number of samples."""
    x = np.random.default_rng(0).random((N_SAMPLES, 784), dtype=np.float32)
    model = ICAE(
        n_clusters=10,
        embedding_dim=60,
        channels=channels,
        n_views=n_views,
        epochs=1,
        batch_size=100,
        image_shape=(1, 28, 28),
        device="cpu",
        random_state=0,
    )
    with FlopCounterMode(display=False) as counter:
        model.fit(x)
    return counter.get_total_flops() / N_SAMPLES


def main() -> None:
    for name, channels, views in [
        ("full (paper)", (32, 64, 128, 256, 512), 4),
        ("quick", (16, 32, 64, 128, 256), 1),
    ]:
        per = flops_per_sample_epoch(channels, views)
        total = per * PAPER_EPOCHS * PAPER_N
        hours = ", ".join(f"{k}: {total / (r * 1e12) / 3600:.1f} h" for k, r in RATES.items())
        print(f"{name}: {per / 1e9:.2f} GFLOP per sample and epoch; one seed of 400 epochs x 70k")
        print(f"  = {total:.2e} FLOP ({hours})")


if __name__ == "__main__":
    main()
