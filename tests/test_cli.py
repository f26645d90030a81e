import csv
import subprocess
import sys

import numpy as np
import pytest

from aeclust import load, load_metadata
from aeclust.cli import main
from aeclust.datasets.base import apply_scaling


@pytest.fixture
def blob_files(tmp_path, blobs):
    x, y = blobs
    npy = tmp_path / "x.npy"
    np.save(npy, x)
    npz = tmp_path / "xy.npz"
    np.savez(npz, x=x, y=y)
    return npy, npz


def _labels(path):
    with open(path) as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["index", "label"]
    return np.array([int(r[1]) for r in rows[1:]])


def test_cluster_a_file_writes_labels(blob_files, tmp_path, capsys):
    npy, _ = blob_files
    out = tmp_path / "labels.csv"
    rc = main(["cluster", str(npy), "--method", "kmeans", "--n-clusters", "4", "--out", str(out)])
    assert rc == 0
    labels = _labels(out)
    assert labels.shape == (300,) and set(labels) == {0, 1, 2, 3}
    assert "ACC" not in capsys.readouterr().out  # no labels known, no metrics


def test_cluster_prints_metrics_when_labels_are_known(blob_files, tmp_path, capsys):
    _, npz = blob_files
    out = tmp_path / "l.csv"
    args = ["cluster", str(npz), "--method", "ae-kmeans", "--out", str(out), "--no-cache"]
    args += ["--param", "autoencoder=[16, 2]", "--param", "pretrain_epochs=20", "--device", "cpu"]
    args += ["--save-model", str(tmp_path / "m.pt")]
    assert main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("ACC ") and "NMI " in last and "ARI " in last
    assert float(last.split()[1]) > 0.9
    assert (tmp_path / "m.pt").exists()


def test_cluster_writes_labels_only_where_asked(blob_files, tmp_path, capsys, monkeypatch):
    _, npz = blob_files
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    args = ["cluster", str(npz), "--method", "kmeans"]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert set(tmp_path.iterdir()) == before  # no unasked file
    assert out[0].startswith("kmeans on xy: 300 samples, 4 clusters")
    assert out[1].startswith("fit time ") and "labels" not in out[1]
    assert out[-1].startswith("ACC ") and len(out) == 3

    # --out -: the CSV alone on stdout, the summary and metrics on stderr
    assert main([*args, "--out", "-"]) == 0
    captured = capsys.readouterr()
    rows = captured.out.splitlines()
    assert rows[0] == "index,label" and len(rows) == 301
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(300))
    err = captured.err.strip().splitlines()
    assert "labels written to stdout" in err[1] and err[-1].startswith("ACC ")
    assert set(tmp_path.iterdir()) == before


def test_predict_writes_labels_only_where_asked(blob_files, tmp_path, capsys, monkeypatch):
    npy, _ = blob_files
    model = tmp_path / "km.pt"
    assert main(["cluster", str(npy), "--method", "kmeans", "--n-clusters", "4", "--out", "-",
                 "--save-model", str(model)]) == 0  # fmt: skip
    fitted = capsys.readouterr().out.splitlines()[1:]
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    assert main(["predict", str(model), str(npy)]) == 0
    assert "labels written" not in capsys.readouterr().out
    assert set(tmp_path.iterdir()) == before
    assert main(["predict", str(model), str(npy), "--out", "-"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1:] == fitted
    assert "labels written to stdout" in captured.err


def test_pretraining_cache_is_opt_in(blob_files, tmp_path, monkeypatch):
    _, npz = blob_files
    default = tmp_path / "default-cache"
    monkeypatch.setenv("AECLUST_CACHE", str(default))
    args = ["cluster", str(npz), "--method", "ae-kmeans", "--device", "cpu"]
    args += ["--param", "autoencoder=[8, 2]", "--param", "pretrain_epochs=1"]
    assert main(args) == 0
    assert not default.exists()  # as in the library: no cache unless asked
    assert main([*args, "--cache"]) == 0
    assert len(list(default.glob("ae-*.pt"))) == 1
    own = tmp_path / "own-cache"
    assert main([*args, "--cache-dir", str(own)]) == 0
    assert len(list(own.glob("ae-*.pt"))) == 1
    assert main([*args, "--cache-dir", str(tmp_path / "unused"), "--no-cache"]) == 0
    assert not (tmp_path / "unused").exists()


def test_cluster_with_a_checkpoint_dir_resumes_an_interrupted_run(
    blob_files, tmp_path, capsys, monkeypatch
):
    from aeclust.training import Checkpoint

    _, npz = blob_files
    ckpt = tmp_path / "ckpt"
    args = ["cluster", str(npz), "--method", "dkm", "--no-cache", "--device", "cpu"]
    args += ["--param", "autoencoder=[16, 2]", "--param", "pretrain_epochs=3"]
    args += ["--param", "n_alpha_steps=2", "--param", "epochs_per_alpha=2"]
    assert main([*args, "--out", str(tmp_path / "straight.csv")]) == 0
    original = Checkpoint.save

    def save_then_die(self, trainer, epoch):
        original(self, trainer, epoch)
        if trainer.desc == "DKM" and epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "save", save_then_die)
    resumed = [*args, "--out", str(tmp_path / "resumed.csv"), "--checkpoint-dir", str(ckpt)]
    resumed += ["--checkpoint-interval", "0"]
    assert main(resumed) == 130  # interrupted: the user sees "interrupted", not a traceback
    assert (ckpt / "dkm.pt").exists()
    monkeypatch.setattr(Checkpoint, "save", original)
    assert main(resumed) == 0
    assert not (ckpt / "dkm.pt").exists()
    assert np.array_equal(_labels(tmp_path / "resumed.csv"), _labels(tmp_path / "straight.csv"))
    assert main([*args, "--checkpoint-dir", str(ckpt), "--checkpoint-interval", "-1"]) == 2
    assert "--checkpoint-interval must be a non-negative" in capsys.readouterr().err


def test_cluster_named_dataset(tmp_path, capsys):
    out = tmp_path / "d.csv"
    assert main(["cluster", "--dataset", "digits", "--method", "kmeans", "--out", str(out)]) == 0
    acc = float(capsys.readouterr().out.strip().splitlines()[-1].split()[1])
    assert 0.6 < acc <= 1.0
    assert len(_labels(out)) == 1797


def test_predict_assigns_held_out_rows_with_a_saved_model(blobs, tmp_path, capsys):
    x, y = blobs
    np.savez(tmp_path / "train.npz", x=x[:200], y=y[:200])
    np.savez(tmp_path / "new.npz", x=x[200:], y=y[200:])
    model = tmp_path / "m.pt"
    args = ["cluster", str(tmp_path / "train.npz"), "--method", "ae-kmeans", "--no-cache"]
    args += ["--param", "autoencoder=[16, 2]", "--param", "pretrain_epochs=20", "--device", "cpu"]
    args += ["--out", str(tmp_path / "fit.csv"), "--save-model", str(model)]
    assert main([*args, "--embedding", str(tmp_path / "fit-codes.npy")]) == 0
    fit_acc = float(capsys.readouterr().out.strip().splitlines()[-1].split()[1])

    # on the training rows, predict gives back the labels of the fit
    out = tmp_path / "again.csv"
    assert main(["predict", str(model), str(tmp_path / "train.npz"), "--out", str(out)]) == 0
    assert np.array_equal(_labels(out), _labels(tmp_path / "fit.csv"))
    assert np.load(tmp_path / "fit-codes.npy").shape == (200, 2)

    # held-out rows land in the clusters of their class, and the codes are written
    out, codes = tmp_path / "new.csv", tmp_path / "codes.npy"
    args = ["predict", str(model), str(tmp_path / "new.npz"), "--out", str(out)]
    rc = main([*args, "--embedding", str(codes)])
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("ACC ") and abs(float(last.split()[1]) - fit_acc) < 0.05, fit_acc
    # the saved model's own assignment and codes, not a new fit on the new rows
    saved = load(model)
    assert np.array_equal(_labels(out), saved.predict(x[200:]))
    assert np.allclose(np.load(codes), saved.embed(x[200:]))
    assert np.load(codes).shape == (100, 2)


def test_predict_scales_a_file_as_the_training_data_were(blobs, tmp_path, capsys):
    x, y = blobs
    np.save(tmp_path / "train.npy", x[:200])
    model = tmp_path / "km.pt"
    args = ["cluster", str(tmp_path / "train.npy"), "--method", "kmeans", "--n-clusters", "4"]
    args += ["--scale", "unit", "--out", str(tmp_path / "fit.csv"), "--save-model", str(model)]
    assert main(args) == 0
    scaling = load_metadata(model)["scaling"]
    assert np.allclose(scaling, [x[:200].min(), x[:200].max() - x[:200].min()])

    # one of the four blobs: its own range is far narrower than the training rows'
    keep = np.flatnonzero(y[200:] == 0) + 200
    np.save(tmp_path / "new.npy", x[keep])
    own_range = apply_scaling(x[keep], (x[keep].min(), x[keep].max() - x[keep].min()))
    saved = load(model)
    as_trained = apply_scaling(x[keep], tuple(scaling))
    assert not np.allclose(saved.embed(own_range), saved.embed(as_trained))

    out, codes = tmp_path / "new.csv", tmp_path / "codes.npy"
    capsys.readouterr()
    args = ["predict", str(model), str(tmp_path / "new.npy"), "--out", str(out)]
    assert main([*args, "--embedding", str(codes)]) == 0
    assert "scaled as the training data were" in capsys.readouterr().out
    assert np.allclose(np.load(codes), saved.embed(as_trained))
    assert np.array_equal(_labels(out), saved.predict(as_trained))
    # the blob's rows share the cluster that blob had in the fit
    fit = _labels(tmp_path / "fit.csv")
    assert set(_labels(out)) == {np.bincount(fit[y[:200] == 0]).argmax()}

    # --scale raw skips the recorded map; values far outside the fitted range are flagged
    args = ["predict", str(model), str(tmp_path / "new.npy"), "--scale", "raw", "--out", str(out)]
    assert main(args) == 0
    assert "warning:" in capsys.readouterr().err


def test_predict_maps_raw_rows_like_a_named_dataset(tmp_path, capsys):
    # digits are stored 0..16 and served / 16: a raw file of the same rows gets the same map
    from sklearn.datasets import load_digits

    model, fit = tmp_path / "digits.pt", tmp_path / "fit.csv"
    args = ["cluster", "--dataset", "digits", "--method", "kmeans", "--out", str(fit)]
    assert main([*args, "--save-model", str(model)]) == 0
    assert load_metadata(model)["scaling"] == [0.0, 16.0]
    np.save(tmp_path / "raw.npy", load_digits().data[:300])
    out = tmp_path / "raw.csv"
    assert main(["predict", str(model), str(tmp_path / "raw.npy"), "--out", str(out)]) == 0
    assert np.array_equal(_labels(out), _labels(fit)[:300])
    assert "warning" not in capsys.readouterr().err


def test_predict_refuses_bad_models_and_mismatched_data(blob_files, tmp_path, capsys):
    npy, _ = blob_files
    model = tmp_path / "km.pt"
    args = ["cluster", str(npy), "--method", "kmeans", "--n-clusters", "4"]
    assert main([*args, "--out", str(tmp_path / "l.csv"), "--save-model", str(model)]) == 0
    np.save(tmp_path / "narrow.npy", np.zeros((5, 3), dtype=np.float32))
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    capsys.readouterr()
    for argv, message in [
        (["predict", str(model), str(tmp_path / "narrow.npy")], "3 features per sample"),
        (["predict", str(tmp_path / "junk.pt"), str(npy)], "not a readable aeclust model"),
        (["predict", str(tmp_path / "none.pt"), str(npy)], "model file not found"),
        (["predict", str(model)], "give exactly one of --dataset NAME or a FILE"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("aeclust: error:") and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda p: ["cluster", str(p / "missing.npy"), "--method", "kmeans"], "does not exist"),
        (
            lambda p: ["cluster", str(p / "nan.npy"), "--method", "kmeans", "--n-clusters", "2"],
            "NaN",
        ),
        (
            lambda p: ["cluster", str(p / "x.npy"), "--method", "kmeans", "--n-clusters", "999"],
            "larger than the number of samples",
        ),
        (
            lambda p: ["cluster", str(p / "x.npy"), "--method", "dek", "--n-clusters", "2"],
            "unknown method",
        ),
        (lambda p: ["cluster", "--dataset", "mnst", "--method", "kmeans"], "did you mean"),
        (lambda p: ["cluster", str(p / "x.npy"), "--method", "kmeans"], "--n-clusters is required"),
        (
            lambda p: [
                "cluster",
                str(p / "x.npy"),
                "--method",
                "kmeans",
                "--n-clusters",
                "2",
                "--param",
                "bogus=1",
            ],
            "unknown parameter",
        ),
        (
            lambda p: ["cluster", str(p / "bad.npy"), "--method", "kmeans", "--n-clusters", "2"],
            "npy",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, blob_files, capsys, make_args, message):
    x = np.ones((10, 3))
    x[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    rc = main(make_args(tmp_path))
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("aeclust: error:") and message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_methods_and_datasets_commands(capsys, tmp_path):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "kmeans" in out and "ae-kmeans" in out
    assert main(["datasets", "--data-home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "mnist_test" in out and "reuters10k" in out


def test_console_script_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "aeclust.cli", "cluster", "--method", "kmeans", "nope.csv"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "nope.csv" in proc.stderr


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cluster_says_when_the_partition_is_degenerate(tmp_path, capsys):
    same = tmp_path / "same.npy"
    np.save(same, np.ones((40, 6), dtype=np.float32))  # one distinct point: empty clusters
    assert main(["cluster", str(same), "--method", "kmeans", "--n-clusters", "3"]) == 0
    err = capsys.readouterr().err
    assert "warning: KMeans ended in a degenerate partition: 2 of 3 clusters are empty" in err


def test_cluster_and_predict_read_a_npy_file_from_disk(blob_files, tmp_path, capsys, monkeypatch):
    from aeclust.rows import DiskRows

    npy, _ = blob_files
    args = ["cluster", str(npy), "--method", "dec", "--n-clusters", "4", "--no-estimate"]
    args += ["--device", "cpu", "--param", "autoencoder=[16, 2]", "--param", "pretrain_epochs=3"]
    args += ["--param", "max_iter=30", "--seed", "0"]
    assert main([*args, "--out", str(tmp_path / "memory.csv")]) == 0
    reads = []
    original = DiskRows.take
    monkeypatch.setattr(DiskRows, "take", lambda self, i: reads.append(len(i)) or original(self, i))
    model = tmp_path / "m.pt"
    disk = [*args, "--from-disk", "--out", str(tmp_path / "disk.csv"), "--save-model", str(model)]
    assert main(disk) == 0
    assert "rows read from" in capsys.readouterr().out
    assert reads  # the training batches came from the file
    assert np.array_equal(_labels(tmp_path / "disk.csv"), _labels(tmp_path / "memory.csv"))
    lo, hi = load_metadata(model)["range"]
    x = np.load(npy)
    assert (lo, hi) == (float(x.min()), float(x.max()))
    out = tmp_path / "predicted.csv"
    assert main(["predict", str(model), str(npy), "--from-disk", "--out", str(out)]) == 0
    assert np.array_equal(_labels(out), _labels(tmp_path / "memory.csv"))


def test_from_disk_reads_into_memory_what_needs_scaling(tmp_path, caplog):
    from aeclust.datasets import load_file

    np.save(tmp_path / "wide.npy", np.linspace(0, 5, 40, dtype=np.float32).reshape(10, 4))
    np.save(tmp_path / "unit.npy", np.linspace(0, 1, 40, dtype=np.float32).reshape(10, 4))
    with caplog.at_level("WARNING"):
        scaled = load_file(tmp_path / "wide.npy", scale="unit", mmap=True)
    assert not isinstance(scaled.x, np.memmap) and "needs them in memory" in caplog.text
    assert scaled.x.max() == 1.0
    kept = load_file(tmp_path / "unit.npy", scale="unit", mmap=True)
    assert isinstance(kept.x, np.memmap) and kept.scaling == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"\.npy files only"):
        load_file(tmp_path, mmap=True)
