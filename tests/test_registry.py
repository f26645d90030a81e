"""The one estimator registry and the one factory the CLI and the bench build estimators with."""

import pytest

from aeclust.methods import (
    ESTIMATORS,
    METHODS,
    KMeans,
    build_estimator,
    estimator_params,
    register_estimator,
)
from aeclust.methods.kmeans import AEKMeans


def test_every_method_is_registered_once_under_its_cli_and_class_names():
    assert len(set(METHODS.values())) == len(METHODS) == 13
    for name, cls in METHODS.items():
        assert ESTIMATORS[cls.__name__] is cls
        assert name.replace("-", "") == cls.__name__.lower()
    assert "ClassSeparatingAE" in ESTIMATORS  # a transformer: restorable, not a CLI method
    assert "ClassSeparatingAE" not in {c.__name__ for c in METHODS.values()}


def test_a_cli_name_cannot_be_taken_twice():
    with pytest.raises(ValueError, match="'kmeans' is already registered"):
        register_estimator(cli_name="kmeans")(AEKMeans)
    assert METHODS["kmeans"] is KMeans


def test_runner_settings_apply_where_accepted_and_fill_only_where_they_describe_the_data():
    cls, params = estimator_params(
        "ae-kmeans",
        {"n_clusters": 3, "image_shape": (1, 4, 4), "device": "cuda"},
        device="cpu",
        precision="bf16",
        verbose=True,
        image_shape=(1, 2, 8),
        pretrain_cache="/tmp/c",
    )
    assert cls is AEKMeans
    assert params["device"] == "cpu" and params["precision"] == "bf16"  # the runner's
    assert params["image_shape"] == (1, 4, 4)  # the user's, not the data's
    assert params["pretrain_cache"] == "/tmp/c"
    # k-means has no network: the pretraining settings are not passed to it; None is skipped
    km = build_estimator("kmeans", {"n_clusters": 2}, pretrain_cache="/tmp/c", image_shape=None)
    assert isinstance(km, KMeans) and km.n_clusters == 2


@pytest.mark.parametrize(
    "method, params, settings, message",
    [
        ("kmeanz", {}, {}, r"unknown method 'kmeanz'; valid: .*ae-kmeans"),
        ("dec", {"epochz": 3}, {}, r"unknown parameter\(s\) \['epochz'\] for dec; valid: .*alpha"),
        ("dec", {}, {"gpu": 1}, r"unknown setting\(s\) \['gpu'\]; valid: device"),
    ],
)
def test_bad_names_get_one_line_naming_the_valid_ones(method, params, settings, message):
    with pytest.raises(ValueError, match=message):
        build_estimator(method, params, **settings)
