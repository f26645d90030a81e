"""Shared fixtures: small real data, and the location of the shared benchmark datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def data_home() -> Path | None:
    """The benchmark data folder: $AECLUST_DATA, else ../shared/datasets, else None."""
    env = os.environ.get("AECLUST_DATA")
    for candidate in (Path(env) if env else None, SHARED):
        if candidate is not None and candidate.is_dir():
            return candidate
    return None


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    # Never write into the user's real pretraining cache from a test.
    monkeypatch.setenv("AECLUST_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from aeclust.datasets import load_dataset

    ds = load_dataset("digits")
    return ds.x, ds.y


@pytest.fixture(scope="session")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=300, centers=4, n_features=8, cluster_std=1.0, random_state=3)
    return x.astype(np.float32), y


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
