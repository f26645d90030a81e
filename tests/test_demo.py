"""``make demo`` end to end, shortened: every method runs, the figure is written."""

from __future__ import annotations

from aeclust import demo


def test_demo_prints_three_methods_and_writes_the_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "AE_KMEANS_PARAMS", {**demo.AE_KMEANS_PARAMS, "pretrain_epochs": 1})
    monkeypatch.setattr(demo, "N2D_PARAMS", {"pretrain_epochs": 1})
    figure = tmp_path / "demo.png"
    results = demo.main(figure=figure)
    assert set(results) == {"k-means (pixels)", "AE+k-means", "N2D"}
    assert all(0.0 <= r["acc"] <= 1.0 and r["seconds"] >= 0 for r in results.values())
    assert results["k-means (pixels)"]["acc"] > 0.7  # k-means on digits is about 0.79
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "N2D" in out and "aeclust cluster" in out
