"""One process of the data-parallel test (tests/test_distributed.py): started twice, as torchrun
would start it (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment)."""

from __future__ import annotations

import json
import sys

import numpy as np

from aeclust import CCAE, CT, DAMIC, DCN, DEC, DKM, ICAE, KDAE, VCC, AEKMeans, distributed

#: The data-parallel fits the test makes, in one process and in two.
_NETWORK = {"autoencoder": [32, 4], "pretrain_epochs": 20, "batch_size": 32, "device": "cpu"}
_MIXTURE_OF_AES = dict(
    _NETWORK,
    pretrain_loss="mse",
    cluster_autoencoder=[16, 2],
    cluster_pretrain_epochs=5,
    epochs=5,
    patience=None,
    random_state=0,
)
CASES = {
    "ae-kmeans": lambda: AEKMeans(n_clusters=4, random_state=0, **_NETWORK),
    "dec": lambda: DEC(n_clusters=4, max_iter=150, update_interval=20, random_state=0, **_NETWORK),
    "dcn": lambda: DCN(n_clusters=4, epochs=5, random_state=0, **_NETWORK),
    "dkm": lambda: DKM(
        n_clusters=4, alphas=[1.0, 5.0], epochs_per_alpha=3, random_state=0, **_NETWORK
    ),
    "ct": lambda: CT(n_clusters=4, epochs=5, random_state=0, **_NETWORK),
    "kdae": lambda: KDAE(n_clusters=4, **_MIXTURE_OF_AES),
    "damic": lambda: DAMIC(n_clusters=4, **_MIXTURE_OF_AES),
    "ccae": lambda: CCAE(
        n_clusters=4, n_shifts=2, shift_epochs=3, activation="relu", random_state=0, **_NETWORK
    ),
    "icae": lambda: ICAE(
        n_clusters=4,
        channels=(4, 8),
        embedding_dim=8,
        epochs=10,
        n_views=1,
        batch_size=32,
        image_shape=(1, 2, 4),
        random_state=0,
        device="cpu",
    ),
    "vcc": lambda: VCC(
        n_clusters=4,
        hidden_dims=[32],
        embedding_dim=2,
        n_neighbors=10,
        epochs=10,
        random_state=0,
        device="cpu",
    ),
}


def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian blobs in 8 dimensions, 401 rows (an odd count: the shards differ by one)."""
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=401, centers=4, n_features=8, cluster_std=3.5, random_state=3)
    return x.astype(np.float32), y


def resume(out: str) -> None:
    """A data-parallel DEC fit cut off after a checkpoint, then run again in the same block:
    it must end as the uninterrupted fit, in every process."""
    from aeclust.training import Checkpoint, checkpointing

    assert distributed.init_from_env("cpu"), "expected a group of several processes"
    x, _ = blobs()
    reference = CASES["dec"]().fit(x)
    original = Checkpoint.save
    seen: list[str] = []

    def save_then_die(self, trainer, epoch):
        original(self, trainer, epoch)
        seen.append(self.path.name)
        if trainer.desc == "DEC" and epoch == 2:
            raise KeyboardInterrupt

    folder = f"{out}/checkpoints"
    with checkpointing(folder, interval_s=0):
        Checkpoint.save = save_then_die
        try:
            CASES["dec"]().fit(x)
            raise AssertionError("the first fit was not cut off")
        except KeyboardInterrupt:
            pass
        finally:
            Checkpoint.save = original
        resumed = CASES["dec"]().fit(x)
    rank = distributed.world()[0]
    result = {
        "labels_equal": resumed.labels_.tolist() == reference.labels_.tolist(),
        "history_equal": resumed.history_ == reference.history_,
        "updates_equal": resumed.target_updates_ == reference.target_updates_,
        "files": sorted(set(seen)),
    }
    with open(f"{out}/resume{rank}.json", "w", encoding="utf-8") as fh:
        json.dump(result, fh)


def global_batch_gradient(out: str) -> None:
    """The gradient of a loss over the global batch (a mean term plus an MMD of every process's
    codes, ICAE's Loss3 and Loss2) under DistributedDataParallel, for comparison with one
    process on the whole batch."""
    import torch

    from aeclust.primitives.mmd import mmd
    from aeclust.training import Trainer, TrainingModule

    assert distributed.init_from_env("cpu"), "expected a group of several processes"
    torch.manual_seed(0)
    net = torch.nn.Linear(8, 3)
    x = torch.from_numpy(blobs()[0][:64])
    targets = torch.eye(3)[torch.arange(64) % 3]

    class GlobalLoss(TrainingModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def training_step(self, idx, xb):
            z = self.net(xb)
            every = distributed.gather_rows_with_grad(z)
            return z.square().mean() + mmd(every, targets[: every.shape[0]])

    module = GlobalLoss()
    with distributed.sharded_fit():
        rows = distributed.own_rows(x)
        trainer = Trainer(
            module,
            torch.optim.SGD(module.parameters(), lr=0.0),
            epochs=1,
            batch_size=64,
            shuffle=False,
        )
        step = trainer._step_function(module)
        step(torch.arange(len(rows)), rows).backward()
    rank = distributed.world()[0]
    grads = {n: p.grad.tolist() for n, p in net.named_parameters()}
    with open(f"{out}/grad{rank}.json", "w", encoding="utf-8") as fh:
        json.dump(grads, fh)


def main(out: str) -> None:
    assert distributed.init_from_env("cpu"), "expected a group of several processes"
    x, _ = blobs()
    fits = {}
    for name, make in CASES.items():
        model = make().fit(x)
        fits[name] = {
            "labels": model.labels_.tolist(),
            "pretrain_loss": getattr(model, "pretrain_history_", [{}])[-1].get("loss"),
            # per-row fitted attributes hold every process's rows too (CT's memberships)
            "per_row": {
                a: len(getattr(model, a))
                for a in ("max_membership_", "initial_max_membership_")
                if hasattr(model, a)
            },
        }
    rank = distributed.world()[0]
    # each process reads its block of a memory-mapped file batch by batch: the same fit
    path = f"{out}/x{rank}.npy"
    np.save(path, x)
    mapped = CASES["dec"]().fit(np.load(path, mmap_mode="r"))
    fits["dec_from_disk_equal"] = mapped.labels_.tolist() == fits["dec"]["labels"]
    with open(f"{out}/rank{rank}.json", "w", encoding="utf-8") as fh:
        json.dump(fits, fh)


if __name__ == "__main__":
    try:
        modes = {"resume": resume, "grad": global_batch_gradient}
        modes.get(sys.argv[2] if len(sys.argv) > 2 else "", main)(sys.argv[1])
    finally:
        distributed.shutdown()
