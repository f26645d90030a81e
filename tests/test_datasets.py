"""Tests for aeclust.datasets: registry, npz format, user-file readers, downloads and caching.

Downloads are exercised with local ``file://`` URLs (and a refused localhost port for the offline
case); nothing here touches the network. Tests marked ``data`` read the shared benchmark files from
``$AECLUST_DATA`` (default ``/work/shared/datasets``) and skip when they are absent.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import logging
import os
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from aeclust.datasets import (
    DATASETS,
    ChecksumError,
    Dataset,
    DownloadError,
    UnsafeArchiveError,
    content_sha256,
    converters,
    download,
    fetch_dataset,
    get_data_home,
    get_dataset_info,
    list_datasets,
    load_dataset,
    load_file,
)
from aeclust.datasets.base import apply_scaling, unit_scaling
from aeclust.datasets.download import RemoteFile, fetch_url, safe_extract_zip, sha256_file

# --------------------------------------------------------------------------- helpers


def _write_manifest_npz(path: Path, x: np.ndarray, y: np.ndarray, split=None, **extra) -> Path:
    if split is None:
        split = np.zeros(len(y), np.uint8)
    np.savez_compressed(path, x=x, y=y, split=split, **extra)
    return path


def _fake_images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _write_idx(path: Path, arr: np.ndarray) -> Path:
    header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())
    return path


def _write_esl(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    v = x.reshape(len(x), -1) / 127.5 - 1.0
    lines = [" ".join([f"{lab:.4f}", *(f"{a:.4f}" for a in row)]) for lab, row in zip(y, v)]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def _no_leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data home, also set as $AECLUST_DATA."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("AECLUST_DATA", str(h))
    return h


def _patch_source(monkeypatch: pytest.MonkeyPatch, name: str, **changes) -> None:
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], **changes))


def _usps_raw(tmp_path: Path, n_train: int = 6, n_test: int = 4):
    x = _fake_images(n_train + n_test, (16, 16), seed=1)
    y = np.arange(n_train + n_test, dtype=np.int64) % 10
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    tr = _write_esl(raw / "zip.train.gz", x[:n_train], y[:n_train])
    te = _write_esl(raw / "zip.test.gz", x[n_train:], y[n_train:])
    return x, y, tr, te


# --------------------------------------------------------------------------- Dataset


def test_dataset_container_and_images() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 60)
    ds = Dataset(x=x, y=np.array([0, 1]), n_classes=2, image_shape=(3, 4, 5), name="t", source="m")
    assert ds.x.dtype == np.float32 and ds.x.flags.c_contiguous
    assert ds.y.dtype == np.int64
    assert (ds.n_samples, ds.n_features) == (2, 60)
    assert ds.images().shape == (2, 3, 4, 5)
    assert np.shares_memory(ds.images(), ds.x)
    assert "n_samples=2" in repr(ds)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"  # type: ignore[misc]


def test_dataset_rejects_bad_shapes() -> None:
    meta = {"name": "f", "source": ""}
    flat = Dataset(x=np.zeros((3, 4)), y=None, n_classes=None, image_shape=None, **meta)
    with pytest.raises(ValueError, match="no image_shape"):
        flat.images()
    with pytest.raises(ValueError, match="holds 12 values"):
        Dataset(x=np.zeros((3, 4)), y=None, n_classes=None, image_shape=(1, 3, 4), **meta)
    with pytest.raises(ValueError, match="y must have shape"):
        Dataset(x=np.zeros((3, 4)), y=np.zeros(2, int), n_classes=1, image_shape=None, **meta)
    with pytest.raises(ValueError, match="2-D"):
        Dataset(x=np.zeros(3), y=None, n_classes=None, image_shape=None, **meta)


# --------------------------------------------------------------------------- registry


def test_digits_unit_and_raw() -> None:
    ds = load_dataset("digits")
    assert ds.x.shape == (1797, 64) and ds.x.dtype == np.float32
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.y.dtype == np.int64 and ds.n_classes == 10 and set(np.unique(ds.y)) == set(range(10))
    assert ds.images().shape == (1797, 1, 8, 8)
    raw = load_dataset("digits", scale=None)
    assert raw.x.max() == 16.0
    np.testing.assert_allclose(raw.x / 16.0, ds.x)
    assert load_dataset("digits", scale="raw").x.max() == 16.0


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError) as err:
        load_dataset("mnits")
    msg = str(err.value)
    assert "(did you mean 'mnist'?)" in msg
    for name in ("digits", "mnist", "usps", "coil20", "reuters10k"):
        assert name in msg
    with pytest.raises(ValueError, match="scale"):
        load_dataset("digits", scale="standard")


def test_name_normalisation() -> None:
    assert get_dataset_info("Fashion-MNIST").name == "fashion_mnist"
    assert get_dataset_info("COIL-20").name == "coil20"
    assert get_dataset_info("pie").name == "cmu_pie"


def test_get_data_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AECLUST_DATA", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("AECLUST_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert get_data_home() == tmp_path / ".cache" / "aeclust"
    assert not (tmp_path / ".cache").exists()  # not created by the lookup


def test_list_datasets(home: Path) -> None:
    _write_manifest_npz(home / "usps.npz", _fake_images(4, (16, 16)), np.arange(4))
    rows = {r["name"]: r for r in list_datasets()}
    assert set(rows) == set(DATASETS)
    assert rows["digits"]["present"] and rows["usps"]["present"]
    assert not rows["mnist"]["present"] and not rows["reuters10k"]["present"]
    assert rows["usps"]["shape"] == (1, 16, 16) and rows["usps"]["n_samples"] == 9298
    assert rows["coil100"]["shape"] == (3, 32, 32) and rows["reuters10k"]["shape"] == (2000,)
    for r in rows.values():
        assert {"name", "n_samples", "shape", "n_classes", "present", "source"} <= set(r)


def test_load_registered_npz_and_scale(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    x = _fake_images(12, (16, 16))
    y = np.arange(12, dtype=np.int64) % 10
    _write_manifest_npz(home / "usps.npz", x, y, split=(np.arange(12) >= 8).astype(np.uint8))
    with caplog.at_level(logging.WARNING):
        ds = load_dataset("usps")
    assert "registry expects 9298" in caplog.text
    assert ds.x.shape == (12, 256) and ds.image_shape == (1, 16, 16)
    np.testing.assert_allclose(ds.x, x.reshape(12, -1) / 255.0, rtol=1e-6)
    assert ds.source == str(home / "usps.npz")
    np.testing.assert_array_equal(ds.split, np.arange(12) >= 8)
    raw = load_dataset("usps", scale=None)
    np.testing.assert_array_equal(raw.x, x.reshape(12, -1).astype(np.float32))


def test_test_split_selection(home: Path) -> None:
    x = _fake_images(10, (28, 28))
    y = np.arange(10, dtype=np.int64)
    split = np.array([0] * 7 + [1] * 3, np.uint8)
    _write_manifest_npz(home / "mnist.npz", x, y, split)
    ds = load_dataset("mnist_test", scale=None)
    assert ds.name == "mnist_test" and ds.n_samples == 3
    np.testing.assert_array_equal(ds.y, [7, 8, 9])
    np.testing.assert_array_equal(ds.x, x[7:].reshape(3, -1))
    assert load_dataset("mnist").n_samples == 10


def test_colour_npz_is_channels_first(home: Path) -> None:
    x = _fake_images(3, (32, 32, 3))
    _write_manifest_npz(home / "coil100.npz", x, np.array([0, 1, 99]))
    ds = load_dataset("coil100", scale=None)
    assert ds.image_shape == (3, 32, 32)
    np.testing.assert_array_equal(ds.images(), x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.images()[1, 2, 5, 7], x[1, 5, 7, 2])


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": _fake_images(3, (16, 16)), "y": np.arange(3)}, r"missing key\(s\) \['split'\]"),
        (
            {"x": np.zeros((3, 16, 16)), "y": np.arange(3), "split": np.zeros(3, np.uint8)},
            "dtype uint8, got float64",
        ),
        (
            {"x": _fake_images(3, (8, 8)), "y": np.arange(3), "split": np.zeros(3, np.uint8)},
            r"shape \(16, 16\), got \(8, 8\)",
        ),
        (
            {"x": _fake_images(3, (16, 16)), "y": np.array([0, 1, 10]), "split": np.zeros(3)},
            r"labels must lie in 0..9, found 0..10",
        ),
        (
            {"x": _fake_images(3, (16, 16)), "y": np.arange(2), "split": np.zeros(3, np.uint8)},
            r"y must have shape \(3,\)",
        ),
        (
            {"x": _fake_images(3, (16, 16)), "y": np.arange(3), "split": np.full(3, 2, np.uint8)},
            "split values must be 0",
        ),
        (
            {"x": _fake_images(3, (16, 16)), "y": np.arange(3) * 0.5, "split": np.zeros(3)},
            "integer",
        ),
    ],
)
def test_npz_validation_errors(home: Path, arrays: dict, message: str) -> None:
    np.savez_compressed(home / "usps.npz", **arrays)
    with pytest.raises(ValueError, match=message) as err:
        load_dataset("usps", download=False)
    assert "usps.npz" in str(err.value)


def test_corrupt_npz(home: Path) -> None:
    (home / "orl.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"cannot read it as an \.npz"):
        load_dataset("orl")


def test_missing_file_without_download(home: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cmu_pie", download=False)
    msg = str(err.value)
    assert "cmu_pie.npz" in msg and str(home) in msg and "AECLUST_DATA" in msg
    assert "download=True" in msg


def test_reuters10k(home: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"supply .*reuters10k\.npz.*x \(float32 tf-idf"):
        load_dataset("reuters10k")
    x = np.random.default_rng(0).random((5, 2000)).astype(np.float32) * 3
    np.savez_compressed(home / "reuters10k.npz", x=x, y=np.array([0, 1, 2, 3, 0]))
    ds = load_dataset("reuters10k")  # scale="unit" does not rescale tf-idf
    np.testing.assert_array_equal(ds.x, x)
    assert ds.image_shape is None and ds.n_classes == 4
    np.savez_compressed(home / "reuters10k.npz", x=x.astype(np.uint8), y=np.zeros(5, int))
    with pytest.raises(ValueError, match="2-D float"):
        load_dataset("reuters10k")


# --------------------------------------------------------------------------- downloads


def test_fetch_url_file_scheme(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello world" * 1000)
    sha = sha256_file(src)
    out = fetch_url(src.as_uri(), tmp_path / "dest.bin", sha256=sha)
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(ChecksumError) as err:
        fetch_url(src.as_uri(), tmp_path / "bad.bin", sha256="0" * 64, what="test file")
    msg = str(err.value)
    assert f"expected sha256 {'0' * 64}" in msg and f"got {sha}" in msg and src.as_uri() in msg
    assert not (tmp_path / "bad.bin").exists() and not _no_leftovers(tmp_path)
    with pytest.raises(DownloadError, match="could not download"):
        fetch_url((tmp_path / "missing").as_uri(), tmp_path / "x.bin")
    assert not _no_leftovers(tmp_path)


def test_download_file_uses_mirror_and_cache(tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    remote = RemoteFile(
        "a", "a.bin", ((tmp_path / "gone.bin").as_uri(), src.as_uri()), sha256_file(src)
    )
    out = download.download_file(remote, tmp_path / "dl", dataset="demo")
    assert out.read_bytes() == b"abc"
    src.unlink()  # the cached verified copy is reused, nothing is fetched
    assert download.download_file(remote, tmp_path / "dl", dataset="demo") == out


def test_download_convert_and_cache(home: Path, tmp_path: Path) -> None:
    x, y, tr, te = _usps_raw(tmp_path)
    patch = pytest.MonkeyPatch()  # undone before the second load, unlike the home fixture
    _patch_source(
        patch,
        "usps",
        remote=(
            RemoteFile("train", "zip.train.gz", (tr.as_uri(),), sha256_file(tr)),
            RemoteFile("test", "zip.test.gz", (te.as_uri(),), sha256_file(te)),
        ),
        content_sha256=content_sha256(x, y),
    )
    try:
        ds = load_dataset("usps", scale=None)
    finally:
        patch.undo()
    np.testing.assert_array_equal(ds.x, x.reshape(len(x), -1))
    np.testing.assert_array_equal(ds.y, y)
    np.testing.assert_array_equal(ds.split, [0] * 6 + [1] * 4)
    stored = np.load(home / "usps.npz", allow_pickle=False)
    assert stored["x"].dtype == np.uint8 and stored["x"].shape == (10, 16, 16)
    assert not (home / "downloads" / "usps").exists()  # raw files removed after conversion
    assert not _no_leftovers(home)
    # Second load reads the cached npz: the sources are no longer needed.
    tr.unlink()
    assert load_dataset("usps").n_samples == 10


def test_download_checksum_mismatch(home: Path, tmp_path: Path, monkeypatch) -> None:
    _, _, tr, te = _usps_raw(tmp_path)
    _patch_source(
        monkeypatch,
        "usps",
        remote=(
            RemoteFile("train", "zip.train.gz", (tr.as_uri(),), "ab" * 32),
            RemoteFile("test", "zip.test.gz", (te.as_uri(),), sha256_file(te)),
        ),
    )
    with pytest.raises(ChecksumError) as err:
        load_dataset("usps")
    msg = str(err.value)
    assert "usps" in msg and tr.as_uri() in msg
    assert f"expected sha256 {'ab' * 32}" in msg and f"got {sha256_file(tr)}" in msg
    assert "deleted" in msg
    assert not (home / "usps.npz").exists()
    assert not (home / "downloads" / "usps" / "zip.train.gz").exists()
    assert not _no_leftovers(home)


def test_content_checksum_mismatch_deletes_raw(home: Path, tmp_path: Path, monkeypatch) -> None:
    _, _, tr, te = _usps_raw(tmp_path)
    _patch_source(
        monkeypatch,
        "usps",
        remote=(
            RemoteFile("train", "zip.train.gz", (tr.as_uri(),), None),
            RemoteFile("test", "zip.test.gz", (te.as_uri(),), None),
        ),
        content_sha256="cd" * 32,
    )
    with pytest.raises(ChecksumError, match=f"expected sha256 {'cd' * 32} of x then y"):
        load_dataset("usps")
    assert not (home / "usps.npz").exists()
    assert not (home / "downloads" / "usps").exists()


def test_offline_error_message(home: Path, monkeypatch) -> None:
    url = "https://example.invalid/zip.train.gz"

    def offline(url: str, timeout: float):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(download, "_urlopen", offline)
    _patch_source(
        monkeypatch, "usps", remote=(RemoteFile("train", "zip.train.gz", (url,), "00" * 32),)
    )
    with pytest.raises(DownloadError) as err:
        load_dataset("usps")
    msg = str(err.value)
    assert "could not download usps" in msg and url in msg
    assert "Network is unreachable" in msg and "(network unreachable?)" in msg
    assert f"place usps.npz in {home}" in msg and "AECLUST_DATA" in msg
    assert not isinstance(err.value, ChecksumError)


def test_reuters_cannot_be_fetched(home: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no canonical single-file source"):
        fetch_dataset("reuters10k")


def test_conversion_failure_is_atomic(home: Path, tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "data.mat"
    src.write_bytes(b"this is not a mat file")
    _patch_source(monkeypatch, "orl", remote=(RemoteFile("mat", "ORL.mat", (src.as_uri(),), None),))
    with pytest.raises(DownloadError, match=r"could not convert orl from file://"):
        load_dataset("orl")
    assert not (home / "orl.npz").exists() and not _no_leftovers(home)


def test_atomic_savez_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    def broken_savez(fh, **arrays):
        fh.write(b"PK partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(download.np, "savez_compressed", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        download.atomic_savez(tmp_path / "out.npz", x=np.zeros(3))
    assert list(tmp_path.iterdir()) == []


def test_write_failure_leaves_no_npz(home: Path, tmp_path: Path, monkeypatch) -> None:
    _, _, tr, te = _usps_raw(tmp_path)
    _patch_source(
        monkeypatch,
        "usps",
        remote=(
            RemoteFile("train", "zip.train.gz", (tr.as_uri(),), sha256_file(tr)),
            RemoteFile("test", "zip.test.gz", (te.as_uri(),), sha256_file(te)),
        ),
        content_sha256=None,
    )

    def broken_savez(fh, **arrays):
        fh.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(download.np, "savez_compressed", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        fetch_dataset("usps")
    assert [p.name for p in home.iterdir()] == ["downloads"]  # no npz, no temp file
    assert not _no_leftovers(home)


def _zip_with(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for n in names:
            zf.writestr(n, b"data")
    return path


@pytest.mark.parametrize("bad", ["../evil.txt", "ok/../../evil.txt", "/abs/evil.txt", "C:/evil"])
def test_zip_path_traversal_rejected(tmp_path: Path, bad: str) -> None:
    archive = _zip_with(tmp_path / "a.zip", ["good.txt", bad])
    dest = tmp_path / "out" / "inner"
    with pytest.raises(UnsafeArchiveError, match="outside the extraction folder"):
        safe_extract_zip(archive, dest)
    assert list(dest.iterdir()) == []  # nothing extracted, not even the good member
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_zip_symlink_rejected_and_good_zip_extracts(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        safe_extract_zip(archive, tmp_path / "o1")
    good = _zip_with(tmp_path / "g.zip", ["a/b.txt", "c.txt"])
    out = safe_extract_zip(good, tmp_path / "o2")
    assert sorted(p.relative_to(tmp_path / "o2").as_posix() for p in out) == ["a/b.txt", "c.txt"]


def test_zip_traversal_through_registry(home: Path, tmp_path: Path, monkeypatch) -> None:
    archive = _zip_with(tmp_path / "coil.zip", ["coil-20-proc/obj1__0.png", "../../escape.png"])
    _patch_source(
        monkeypatch, "coil20", remote=(RemoteFile("zip", "c.zip", (archive.as_uri(),), None),)
    )
    with pytest.raises(DownloadError, match=r"could not convert coil20.*escape\.png"):
        load_dataset("coil20")
    assert not (home / "escape.png").exists() and not (home / "coil20.npz").exists()


# --------------------------------------------------------------------------- converters


def test_idx_roundtrip(tmp_path: Path) -> None:
    x = _fake_images(5, (28, 28))
    y = np.arange(5, dtype=np.uint8)
    files = {
        "train_images": _write_idx(tmp_path / "tri.gz", x[:3]),
        "train_labels": _write_idx(tmp_path / "trl.gz", y[:3]),
        "test_images": _write_idx(tmp_path / "tei.gz", x[3:]),
        "test_labels": _write_idx(tmp_path / "tel.gz", y[3:]),
    }
    out = converters.convert_idx(files, tmp_path)
    np.testing.assert_array_equal(out.x, x)
    np.testing.assert_array_equal(out.y, y)
    np.testing.assert_array_equal(out.split, [0, 0, 0, 1, 1])
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        converters.read_idx(tmp_path / "bad")


def test_esl_usps_conversion(tmp_path: Path) -> None:
    p = tmp_path / "zip.train"
    row = ["3.0000", "-1.0000", "1.0000", "0.0000", "-0.2000"] + ["-1.0000"] * 252
    p.write_text(" ".join(row) + " \n")
    x, y = converters.read_esl_zip(p)
    assert x.shape == (1, 16, 16) and x.dtype == np.uint8 and y.tolist() == [3]
    assert x[0, 0, :4].tolist() == [0, 255, 128, 102]


def test_cai_mat_orientation(tmp_path: Path) -> None:
    x = _fake_images(3, (32, 32))
    fea = x.transpose(0, 2, 1).reshape(3, -1)  # MATLAB rows: column-major images
    scipy.io.savemat(tmp_path / "a.mat", {"fea": fea, "gnd": np.array([[1.0], [2.0], [3.0]])})
    out = converters.read_cai_mat(tmp_path / "a.mat")
    np.testing.assert_array_equal(out.x, x)
    assert out.y.tolist() == [0, 1, 2]
    scipy.io.savemat(tmp_path / "b.mat", {"fea": fea.T, "gnd": np.array([[1], [1], [2]])})
    out = converters.read_cai_mat(tmp_path / "b.mat", fea_transposed=True)
    np.testing.assert_array_equal(out.x, x)


def test_coil_converter_order_and_resize(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    archive = tmp_path / "coil.zip"
    imgs = {}
    with zipfile.ZipFile(archive, "w") as zf:
        for obj in (2, 1):
            for angle in (10, 0, 5):
                img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                imgs[obj, angle] = img
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, "PNG")
                zf.writestr(f"coil/obj{obj}__{angle}.png", buf.getvalue())
        zf.writestr("coil/readme.txt", "ignored")
    work = tmp_path / "work"
    out = converters.coil_converter(2, 3, rgb=True, size=2)({"zip": archive}, work)
    assert out.x.shape == (6, 2, 2, 3) and out.y.tolist() == [0, 0, 0, 1, 1, 1]
    expected = Image.fromarray(imgs[1, 5]).resize((2, 2), Image.Resampling.BOX)
    np.testing.assert_array_equal(out.x[1], np.asarray(expected))
    with pytest.raises(ValueError, match="expected 3 objects"):
        converters.coil_converter(3, 3)({"zip": archive}, tmp_path / "work2")


# --------------------------------------------------------------------------- user files


def test_load_npy_variants(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    flat = rng.random((6, 5))
    np.save(tmp_path / "flat.npy", flat)
    ds = load_file(tmp_path / "flat.npy")
    assert ds.x.shape == (6, 5) and ds.image_shape is None and ds.y is None
    np.testing.assert_allclose(ds.x, flat.astype(np.float32))

    grey = _fake_images(4, (7, 9))
    np.save(tmp_path / "grey.npy", grey)
    ds = load_file(tmp_path / "grey.npy", scale="unit")
    assert ds.image_shape == (1, 7, 9) and ds.x.max() <= 1.0
    np.testing.assert_allclose(ds.images()[:, 0], grey / 255.0, rtol=1e-6)

    nhwc = _fake_images(2, (5, 6, 3))
    np.save(tmp_path / "nhwc.npy", nhwc)
    np.testing.assert_array_equal(
        load_file(tmp_path / "nhwc.npy").images(), nhwc.transpose(0, 3, 1, 2)
    )
    nchw = _fake_images(2, (3, 5, 6))
    np.save(tmp_path / "nchw.npy", nchw)
    np.testing.assert_array_equal(load_file(tmp_path / "nchw.npy").images(), nchw)

    np.save(tmp_path / "vec.npy", np.zeros(5))
    with pytest.raises(ValueError, match="2-D"):
        load_file(tmp_path / "vec.npy")
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN"):
        load_file(tmp_path / "nan.npy")


def test_unit_scale_is_recorded_and_reapplies_to_new_rows(tmp_path: Path, home: Path) -> None:
    # a float file is min-max scaled by its own range; the map is kept so new rows follow it
    x = np.array([[-3.0, 1.0], [5.0, 0.0], [1.0, 2.0]])
    np.save(tmp_path / "f.npy", x)
    ds = load_file(tmp_path / "f.npy", scale="unit")
    assert ds.scaling == (-3.0, 8.0)
    np.testing.assert_allclose(ds.x, (x + 3.0) / 8.0, rtol=1e-6)
    np.save(tmp_path / "new.npy", np.array([[1.0, 1.0]]))  # its own range maps it to zeros
    new = load_file(tmp_path / "new.npy", scale=ds.scaling)
    np.testing.assert_allclose(new.x, [[0.5, 0.5]])
    assert new.scaling == ds.scaling
    with pytest.raises(ValueError, match="divisor > 0"):
        load_file(tmp_path / "new.npy", scale=(0.0, 0.0))
    assert load_file(tmp_path / "f.npy").scaling is None  # raw: nothing applied

    grey = _fake_images(4, (7, 9))
    np.save(tmp_path / "grey.npy", grey)
    assert load_file(tmp_path / "grey.npy", scale="unit").scaling == (0.0, 255.0)
    assert unit_scaling(np.array([0.2, 0.9])) == (0.0, 1.0)  # already in [0, 1]: kept
    assert unit_scaling(np.full(3, 7.0)) == (7.0, 1.0)  # constant: no division by zero
    assert load_dataset("digits").scaling == (0.0, 16.0)
    assert load_dataset("digits", scale=None).scaling is None
    usps = _fake_images(4, (16, 16))
    _write_manifest_npz(home / "usps.npz", usps, np.arange(4) % 2, split=np.zeros(4, np.uint8))
    assert load_dataset("usps").scaling == (0.0, 255.0)

    with pytest.raises(ValueError, match="divisor"):
        apply_scaling(x, (0.0, 0.0))
    with pytest.raises(ValueError, match="a pair"):
        apply_scaling(x, (1.0,))
    with pytest.raises(ValueError, match="scaling must be"):
        Dataset(
            x=x, y=None, n_classes=None, image_shape=None, name="t", source="t", scaling=(0, -1)
        )


def test_load_npz_variants(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((4, 3))
    np.savez(tmp_path / "plain.npz", x=x, y=np.array(["b", "a", "b", "c"]))
    ds = load_file(tmp_path / "plain.npz")
    assert ds.y.tolist() == [1, 0, 1, 2] and ds.n_classes == 3
    assert ds.class_names == ("a", "b", "c")

    imgs = _fake_images(3, (16, 16))
    _write_manifest_npz(tmp_path / "m.npz", imgs, np.array([0, 2, 1]), split=np.array([0, 0, 1]))
    ds = load_file(tmp_path / "m.npz", scale="unit")
    assert ds.image_shape == (1, 16, 16) and ds.n_classes == 3 and ds.split.tolist() == [0, 0, 1]

    np.savez(tmp_path / "nox.npz", data=x)
    with pytest.raises(ValueError, match="must hold an array 'x'"):
        load_file(tmp_path / "nox.npz")
    np.savez(tmp_path / "short.npz", x=x, y=np.arange(3))
    with pytest.raises(ValueError, match="3 labels but x has 4"):
        load_file(tmp_path / "short.npz")


def test_csv_without_header(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("1,2,3\n4.5,-5e-1,6\n\n7,8,9\n")
    ds = load_file(p)
    assert ds.x.shape == (3, 3) and ds.y is None and ds.name == "a"
    np.testing.assert_allclose(ds.x[1], [4.5, -0.5, 6])
    ds = load_file(p, label_column=-1)
    assert ds.x.shape == (3, 2) and ds.y.tolist() == [0, 1, 2] and ds.n_classes == 3
    assert ds.class_names == ("3", "6", "9")


def test_csv_with_header_and_labels(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("f1,f2,species\n0.1,0.2,cat\n0.3,0.4,dog\n0.5,0.6,cat\n")
    ds = load_file(p, label_column="species")
    assert ds.x.shape == (3, 2) and ds.y.tolist() == [0, 1, 0]
    assert ds.class_names == ("cat", "dog")
    ds = load_file(p, label_column=2)
    assert ds.y.tolist() == [0, 1, 0]
    # String labels without a header are detected as data, not as a header.
    q = tmp_path / "nh.csv"
    q.write_text("1;2;cat\n3;4;dog\n")
    ds = load_file(q, label_column=2)
    assert ds.n_samples == 2 and ds.class_names == ("cat", "dog")
    with pytest.raises(ValueError, match=r"no column named 'kind'; columns are \['f1'"):
        load_file(p, label_column="kind")
    with pytest.raises(ValueError, match="out of range"):
        load_file(p, label_column=5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n3,x\n", r"line 3, column 2 \('b'\): non-numeric value 'x'"),
        ("1,2\n3,\n", "line 2, column 2: empty cell"),
        ("1,2\n3,nan\n", "line 2, column 2: non-finite value 'nan'"),
        ("1,2\n3,inf\n", "line 2, column 2: non-finite value 'inf'"),
        ("1,2\n3,4,5\n", "line 2 has 3 columns, expected 2"),
        ("", "empty"),
        ("a,b\n", "no data rows"),
    ],
)
def test_bad_csv(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_file(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_csv_label_name_needs_header(tmp_path: Path) -> None:
    p = tmp_path / "n.csv"
    p.write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match="no header row"):
        load_file(p, label_column="y")


def _save_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_image_folder_with_classes(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    a = _fake_images(3, (6, 5), seed=1)
    for i in range(2):
        _save_png(root / "zebra" / f"img{i}.png", a[i])
    _save_png(root / "ant" / "img10.png", a[2])
    (root / "empty").mkdir()
    ds = load_file(root)
    assert ds.image_shape == (1, 6, 5) and ds.n_samples == 3
    assert ds.class_names == ("ant", "zebra") and ds.y.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(ds.images()[:, 0], a[[2, 0, 1]])
    assert ds.source == str(root)


def test_flat_colour_image_folder(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    rgb = _fake_images(1, (4, 3, 3))[0]
    grey = _fake_images(1, (4, 3))[0]
    _save_png(root / "img2.png", rgb)
    Image.fromarray(grey).save(root / "img10.jpg", quality=100)
    ds = load_file(root, scale="unit")
    assert ds.y is None and ds.image_shape == (3, 4, 3)
    np.testing.assert_allclose(ds.images()[0], rgb.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    assert ds.x.max() <= 1.0


def test_image_folder_errors(tmp_path: Path) -> None:
    root = tmp_path / "mixed_sizes"
    _save_png(root / "c0" / "a.png", _fake_images(1, (4, 4))[0])
    _save_png(root / "c1" / "b.png", _fake_images(1, (5, 4))[0])
    with pytest.raises(ValueError, match=r"same size, found 4x4: 1 .*4x5: 1"):
        load_file(root)
    both = tmp_path / "both"
    _save_png(both / "top.png", _fake_images(1, (4, 4))[0])
    _save_png(both / "c0" / "a.png", _fake_images(1, (4, 4))[0])
    with pytest.raises(ValueError, match="both images and class subfolders"):
        load_file(both)
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        load_file(tmp_path / "none")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read it as an image"):
        load_file(broken)


def test_load_file_path_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_file(tmp_path / "missing.npy")
    (tmp_path / "a.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match=r"unsupported file type '\.parquet'"):
        load_file(tmp_path / "a.parquet")
    np.save(tmp_path / "a.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="CSV files only"):
        load_file(tmp_path / "a.npy", label_column=0)


# --------------------------------------------------------------------------- shared data

SHARED = Path(os.environ.get("AECLUST_DATA") or "/work/shared/datasets")


def _shared(file: str) -> Path:
    path = SHARED / f"{file}.npz"
    if not path.is_file():
        pytest.skip(f"{path} not present (set AECLUST_DATA to the benchmark data folder)")
    return path


@pytest.mark.data
def test_shared_mnist_test() -> None:
    _shared("mnist")
    ds = load_dataset("mnist_test", SHARED, download=False)
    assert ds.x.shape == (10000, 784) and ds.image_shape == (1, 28, 28)
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(ds.y, minlength=10).tolist() == counts


@pytest.mark.data
def test_shared_usps() -> None:
    _shared("usps")
    ds = load_dataset("usps", SHARED, download=False)
    assert ds.x.shape == (9298, 256) and ds.n_classes == 10
    assert np.bincount(ds.y[ds.split == 0]).tolist() == [
        1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644,
    ]  # fmt: skip
    assert np.bincount(ds.y[ds.split == 1]).tolist() == [
        359, 264, 198, 166, 200, 160, 170, 147, 166, 177,
    ]  # fmt: skip


@pytest.mark.data
@pytest.mark.parametrize(
    ("name", "n", "d", "k", "per_class"),
    [("coil20", 1440, 16384, 20, 72), ("orl", 400, 1024, 40, 10)],
)
def test_shared_small(name: str, n: int, d: int, k: int, per_class: int) -> None:
    _shared(name)
    ds = load_dataset(name, SHARED, download=False)
    assert ds.x.shape == (n, d) and ds.n_classes == k
    assert (np.bincount(ds.y, minlength=k) == per_class).all()
    assert ds.x.dtype == np.float32 and 0.0 <= ds.x.min() and ds.x.max() <= 1.0


@pytest.mark.data
@pytest.mark.parametrize("name", ["usps", "orl", "yale", "yaleb", "coil20", "mnist"])
def test_shared_content_hashes(name: str) -> None:
    path = _shared(name)
    with np.load(path, allow_pickle=False) as data:
        assert content_sha256(data["x"], data["y"]) == DATASETS[name].content_sha256


@pytest.mark.data
@pytest.mark.parametrize("name", ["orl", "yale", "usps"])
def test_shared_conversion_roundtrip(name: str, tmp_path: Path, monkeypatch) -> None:
    """Rebuild the raw source format from the shared copy and run the real fetch pipeline.

    The content sha256 in the registry must then verify, so this checks that the converters
    (transposes, label offsets, the USPS rounding) reproduce the reference files exactly.
    """
    with np.load(_shared(name), allow_pickle=False) as data:
        x, y, split = data["x"], data["y"], data["split"]
    raw = tmp_path / "raw"
    raw.mkdir()
    if name == "usps":
        tr = _write_esl(raw / "zip.train.gz", x[split == 0], y[split == 0])
        te = _write_esl(raw / "zip.test.gz", x[split == 1], y[split == 1])
        remote = (
            RemoteFile("train", "zip.train.gz", (tr.as_uri(),), sha256_file(tr)),
            RemoteFile("test", "zip.test.gz", (te.as_uri(),), sha256_file(te)),
        )
    else:
        mat = raw / f"{name}.mat"
        fea = x.transpose(0, 2, 1).reshape(len(x), -1)
        scipy.io.savemat(mat, {"fea": fea, "gnd": (y + 1.0)[:, None]})
        remote = (RemoteFile("mat", mat.name, (mat.as_uri(),), None),)  # content hash verifies
    _patch_source(monkeypatch, name, remote=remote)
    out = fetch_dataset(name, tmp_path / "home")
    with np.load(out, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["x"], x)
        np.testing.assert_array_equal(data["y"], y)
        np.testing.assert_array_equal(data["split"], split)
