"""Parameters are declared with constraints and checked in ``fit`` before any work."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation

from aeclust import DEC
from aeclust.methods import ESTIMATORS
from aeclust.methods import base as base_module
from aeclust.methods.params import SHARED_PARAMS, Param, SequenceOf, declare

PROTOCOLS = Path(__file__).resolve().parents[1] / "benchmarks" / "protocols"
X = np.random.default_rng(0).random((40, 4)).astype(np.float32)


@pytest.fixture
def no_pretraining(monkeypatch):
    """Make any pretraining fail loudly: a parameter error must come before it."""

    def pretrain(*args, **kwargs):
        raise AssertionError("pretraining started before the parameters were checked")

    monkeypatch.setattr(base_module, "pretrain_autoencoder", pretrain)


@pytest.mark.parametrize(
    ("param", "value", "allowed"),
    [
        ("update_interval", 0, "an int in the range [1, inf)"),
        ("n_init", 0, "an int in the range [1, inf)"),
        ("optimizer", "adm", "a str among"),
        ("alpha", -1.0, "a float in the range (0.0, inf)"),
    ],
)
def test_dec_rejects_a_bad_parameter_in_one_line_before_pretraining(
    no_pretraining, param, value, allowed
):
    with pytest.raises(ValueError) as info:
        DEC(3, autoencoder=[4, 2], device="cpu", **{param: value}).fit(X)
    message = str(info.value)
    assert message.startswith(f"The {param!r} parameter of DEC must be "), message
    assert allowed in message and f"Got {value!r} instead." in message
    assert "\n" not in message
    if param == "optimizer":  # the valid names are listed
        assert all(name in message for name in ("'adam'", "'adamw'", "'sgd'"))


def test_pretrain_checks_the_parameters_first(no_pretraining):
    with pytest.raises(ValueError, match="'pretrain_epochs' parameter of AEKMeans"):
        ESTIMATORS["AEKMeans"](3, pretrain_epochs=-1).pretrain(X)


#: One bad value per estimator (a parameter of its own, where it has one).
BAD = {
    "KMeans": ("max_iter", 0),
    "AEKMeans": ("pretrain_loss", "l1"),
    "DEC": ("tol", 2.0),
    "IDEC": ("gamma", -0.1),
    "DCN": ("initial_count", -5),
    "DKM": ("alphas", [1.0, -2.0]),
    "KDAE": ("loss", "fuzzy"),
    "DAMIC": ("gate_hidden", [0]),
    "CT": ("assignment", "gaussian"),
    "CCAE": ("shift", "sideways"),
    "ClassSeparatingAE": ("shift", "centre"),
    "ICAE": ("scale", (0.9,)),
    "VCC": ("keep_snapshots", "yes"),
    "N2D": ("umap_neighbors", 1),
}


def test_every_registered_estimator_has_a_bad_value_case():
    assert set(BAD) == set(ESTIMATORS)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_one_bad_value_per_estimator(name, no_pretraining):
    param, value = BAD[name]
    est = ESTIMATORS[name](**{param: value})
    y = np.arange(len(X)) % 2
    with pytest.raises(ValueError, match=rf"^The '{param}' parameter of {name} must be .*\.$"):
        est.fit(X, y)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_sklearn_param_validation(name):
    """scikit-learn's own check: a constraint for every parameter, and a wrong type or value of
    each one raises InvalidParameterError (a ValueError) naming it, from every fit method."""
    check_param_validation(name, ESTIMATORS[name]())


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_defaults_are_valid(name):
    ESTIMATORS[name]()._validate_params()


def test_shared_parameters_are_declared_once():
    # a class that takes a shared parameter reuses its declaration (constraint objects and
    # type), whatever its default; the named exceptions widen or narrow it on purpose
    own_reading = {
        ("ICAE", "autoencoder"),  # "resnet" only
        ("N2D", "embedding_dim"),  # None: the code has n_clusters units, as N2D's
    }
    for name, cls in ESTIMATORS.items():
        for param, declared in cls.params.items():
            if param in SHARED_PARAMS and (name, param) not in own_reading:
                shared = SHARED_PARAMS[param]
                assert len(declared.constraints) == len(shared.constraints), (name, param)
                assert all(a is b for a, b in zip(declared.constraints, shared.constraints))
                assert declared.annotation == shared.annotation, (name, param)


def test_a_declaration_is_the_signature_and_the_constraints():
    from aeclust.methods import DEC, IDEC

    sig = inspect.signature(DEC)
    assert next(iter(sig.parameters)) == "n_clusters"
    assert sig.parameters["n_clusters"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert sig.parameters["max_iter"].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(sig.parameters)[-5:] == [
        "pretrain_cache", "device", "precision", "random_state", "verbose"
    ]  # fmt: skip
    assert sig.parameters["lr"].default == 0.01 and sig.parameters["optimizer"].default == "sgd"
    assert set(DEC._parameter_constraints) == set(sig.parameters)
    # IDEC is DEC with two other defaults and gamma: nothing re-declared
    idec = inspect.signature(IDEC).parameters
    assert set(idec) == set(sig.parameters) | {"gamma"}
    changed = {n for n in sig.parameters if idec[n].default != sig.parameters[n].default}
    assert changed == {"optimizer", "lr"}
    est = DEC(5, lr=0.1)
    assert est.n_clusters == 5 and est.lr == 0.1 and est.max_iter == 20000
    with pytest.raises(TypeError, match=r"DEC\(\): .*unexpected keyword argument 'lrr'"):
        DEC(lrr=0.1)
    with pytest.raises(TypeError, match=r"DEC\(\): too many positional arguments"):
        DEC(5, "mlp")


def test_declare_refuses_an_undeclared_name_and_a_param_without_constraints():
    with pytest.raises(TypeError, match=r"max_iter=300: not a shared parameter"):
        declare("n_clusters", max_iter=300)
    with pytest.raises(TypeError, match="at least one constraint"):
        Param(3)
    with pytest.raises(TypeError, match=r"not parameters here: \['nope'\]"):
        declare("lr").with_defaults(nope=1)


def test_sequence_constraint():
    from aeclust.methods.params import POSITIVE_INT

    dims = SequenceOf(POSITIVE_INT)
    assert dims.is_satisfied_by([500, 10]) and dims.is_satisfied_by(np.array([3, 4]))
    assert not dims.is_satisfied_by([]) and not dims.is_satisfied_by([5, 0])
    assert not dims.is_satisfied_by("mlp") and not dims.is_satisfied_by(np.ones((2, 2), int))
    shape = SequenceOf(POSITIVE_INT, length=3)
    assert shape.is_satisfied_by((1, 28, 28)) and not shape.is_satisfied_by((28, 28))
    assert str(shape) == "a list or tuple of 3 items, each an int in the range [1, inf)"
    assert SequenceOf(POSITIVE_INT, min_len=0).is_satisfied_by(())


def test_user_module_is_accepted_as_autoencoder():
    from aeclust.nn import MLPAutoencoder

    DEC(3, autoencoder=MLPAutoencoder([4, 2]))._validate_params()
    with pytest.raises(InvalidParameterError, match="'autoencoder' parameter of DEC"):
        DEC(3, autoencoder="transformer")._validate_params()


@pytest.mark.parametrize("path", sorted(PROTOCOLS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_protocol_value_passes_the_constraints(path, tmp_path):
    """The values the benchmark protocols set, resolved as the runner resolves them (shared
    pretraining keys, per-data-set and quick overrides, a selection grid), are all valid."""
    from aeclust.bench import load_protocol
    from aeclust.bench.runner import _merged_params
    from aeclust.datasets import get_dataset_info
    from aeclust.evaluation import encoder_class
    from aeclust.methods import METHODS

    proto = load_protocol(path)
    checked = 0
    for row, spec in proto.methods.items():
        if proto.kind == "classification":
            cls = encoder_class(spec.estimator)
        else:
            cls = METHODS.get(spec.estimator)
        if cls is None:  # the raw pixels take no parameters
            continue
        for quick in (False, True):
            for key in proto.dataset_keys(quick):
                params, _, valid = _merged_params(cls, proto, row, key, quick)
                runner = {
                    "n_clusters": 10,
                    "random_state": 0,
                    "device": "cpu",
                    "precision": "fp32",
                    "pretrain_cache": str(tmp_path),
                    "verbose": False,
                }
                params.update({k: v for k, v in runner.items() if k in valid})
                shape = get_dataset_info(proto.data_name(key, quick)).image_shape
                if "image_shape" in valid and shape is not None:
                    params.setdefault("image_shape", tuple(shape))
                grid = spec.select["grid"] if spec.select else {}
                variants = [{}] + [{k: v} for k, values in grid.items() for v in values]
                for extra in variants:
                    cls(**{**params, **extra})._validate_params()
                    checked += 1
    assert checked
