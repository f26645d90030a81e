"""Estimator parameters, each declared once: default, constraint and type.

scikit-learn reads an estimator's parameters from its ``__init__`` signature and checks them
against its ``_parameter_constraints``; both are built here from one declaration per estimator
(:func:`declare`), so that the parameters several estimators share -- the network, its
pretraining, the device -- are written once (:data:`SHARED_PARAMS`) and a variant changes a
default without re-declaring anything (IDEC from DEC: ``DEC.params.with_defaults(...)``).
:class:`~aeclust.methods.base.BaseDeepClusterer` turns a class's ``params`` into its
``__init__`` and ``_parameter_constraints``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, Options, StrOptions

from aeclust._utils import PRECISIONS
from aeclust.nn.autoencoders import ACTIVATIONS, IDENTITY_NAMES
from aeclust.primitives.losses import PRETRAIN_LOSSES, REC_LOSSES
from aeclust.training import OPTIMIZERS

__all__ = [
    "FRACTION",
    "NON_NEGATIVE_INT",
    "NON_NEGATIVE_REAL",
    "POSITIVE_INT",
    "POSITIVE_REAL",
    "PRETRAINED_AUTOENCODER_PARAMS",
    "PRETRAIN_CONFIG_FIELDS",
    "PRETRAIN_KEYS",
    "RUN_PARAMS",
    "SHARED_PARAMS",
    "DeclaredParams",
    "Param",
    "Params",
    "SequenceOf",
    "declare",
]


class SequenceOf(Options):
    """Constraint: a list, tuple or 1-D array whose every item satisfies ``item``.

    scikit-learn has no constraint for a sequence of numbers (network widths, an image shape, a
    range); this one subclasses its ``Options`` only so that ``validate_parameter_constraints``
    accepts it.

    Parameters
    ----------
    item : Interval
        The constraint every item meets.
    min_len : int
        The fewest items.
    length : int or None
        The exact number of items (overrides ``min_len``).
    """

    def __init__(self, item: Interval, *, min_len: int = 1, length: int | None = None) -> None:
        super().__init__(type=tuple, options=set())
        self.item = item
        self.min_len = min_len
        self.length = length

    def is_satisfied_by(self, val: Any) -> bool:
        if isinstance(val, np.ndarray):
            if val.ndim != 1:
                return False
            val = val.tolist()
        if not isinstance(val, (list, tuple)):
            return False
        n = len(val)
        if (self.length is not None and n != self.length) or n < self.min_len:
            return False
        return all(self.item.is_satisfied_by(v) for v in val)

    def __str__(self) -> str:
        if self.length is not None:
            size = f"of {self.length} items"
        elif self.min_len > 0:
            size = f"of at least {self.min_len} item{'s' if self.min_len > 1 else ''}"
        else:
            size = "(possibly empty)"
        return f"a list or tuple {size}, each {self.item}"


#: Constraint objects the declarations below and the estimator modules share.
POSITIVE_INT = Interval(Integral, 1, None, closed="left")
NON_NEGATIVE_INT = Interval(Integral, 0, None, closed="left")
POSITIVE_REAL = Interval(Real, 0, None, closed="neither")
NON_NEGATIVE_REAL = Interval(Real, 0, None, closed="left")
FRACTION = Interval(Real, 0, 1, closed="both")

_ANNOTATIONS = {bool: "bool", int: "int", float: "float", str: "str", tuple: "Sequence"}


@dataclass(frozen=True)
class Param:
    """One parameter: its default, the constraints a value may meet (scikit-learn's
    ``_parameter_constraints`` kinds; valid when it meets one) and its type for the signature
    (inferred from the default when not given).

    Examples
    --------
    >>> Param(20000, POSITIVE_INT).annotation
    'int'
    """

    default: Any
    constraints: tuple[Any, ...]
    annotation: str

    def __init__(self, default: Any, *constraints: Any, annotation: str | None = None) -> None:
        if not constraints:
            raise TypeError("a parameter needs at least one constraint")
        object.__setattr__(self, "default", default)
        object.__setattr__(self, "constraints", constraints)
        inferred = _ANNOTATIONS.get(type(default), "Any")
        object.__setattr__(self, "annotation", annotation or inferred)

    def with_default(self, default: Any) -> Param:
        """The same parameter with another default."""
        return Param(default, *self.constraints, annotation=self.annotation)


class Params(Mapping[str, Param]):
    """An estimator's parameters in signature order: ``n_clusters`` first (the one positional
    parameter; :meth:`with_positional` chooses another), the run settings (:data:`RUN_PARAMS`)
    last, the others keyword-only between."""

    def __init__(self, params: Mapping[str, Param], positional: str = "n_clusters") -> None:
        first = [n for n in params if n == positional]
        last = [n for n in RUN_PARAMS if n in params and n != positional]
        middle = [n for n in params if n not in first and n not in last]
        self._params = {n: params[n] for n in [*first, *middle, *last]}
        self.positional = positional

    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        return f"Params({', '.join(f'{n}={p.default!r}' for n, p in self._params.items())})"

    def with_positional(self, name: str) -> Params:
        """The same parameters with ``name`` first and positional (``n_clusters`` otherwise)."""
        return Params(self._params, positional=name)

    def with_defaults(self, **defaults: Any) -> Params:
        """The same parameters with other defaults (a variant of a method)."""
        unknown = sorted(set(defaults) - set(self._params))
        if unknown:
            raise TypeError(f"not parameters here: {unknown}")
        return Params(
            {n: p.with_default(defaults[n]) if n in defaults else p for n, p in self.items()},
            self.positional,
        )

    def without(self, *names: str) -> Params:
        """The parameters but ``names``."""
        return Params({n: p for n, p in self.items() if n not in names}, self.positional)

    def extended(self, **params: Param | Any) -> Params:
        """These parameters plus more, in :func:`declare`'s terms (new ones last)."""
        return declare(self, **params)

    def constraints(self) -> dict[str, list[Any]]:
        """``_parameter_constraints`` for scikit-learn's validation."""
        return {n: list(p.constraints) for n, p in self.items()}

    def signature(self) -> inspect.Signature:
        """``__init__(self, n_clusters=..., *, ...)`` (or the positional parameter chosen)."""
        kinds = {self.positional: inspect.Parameter.POSITIONAL_OR_KEYWORD}
        return inspect.Signature(
            [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            + [
                inspect.Parameter(
                    n,
                    kinds.get(n, inspect.Parameter.KEYWORD_ONLY),
                    default=p.default,
                    annotation=p.annotation,
                )
                for n, p in self.items()
            ]
        )

    def init_method(self) -> Callable[..., None]:
        """An ``__init__`` with :meth:`signature` that stores every argument unchanged, as
        scikit-learn requires (``inspect.signature`` and so ``get_params`` see the parameters)."""
        signature = self.signature()

        def __init__(estimator: Any, *args: Any, **kwargs: Any) -> None:
            try:
                bound = signature.bind(estimator, *args, **kwargs)
            except TypeError as exc:  # as Python words it for a written-out __init__
                raise TypeError(f"{type(estimator).__name__}(): {exc}") from None
            bound.apply_defaults()
            for name, value in list(bound.arguments.items())[1:]:
                setattr(estimator, name, value)

        __init__.__signature__ = signature  # type: ignore[attr-defined]
        return __init__


class DeclaredParams:
    """Mixin: a class's ``params`` (:class:`Params`, usually from :func:`declare`) becomes its
    ``__init__`` (the signature scikit-learn's ``get_params`` reads) and its
    ``_parameter_constraints``; a subclass without its own ``params`` inherits both."""

    params: ClassVar[Params]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        params = cls.__dict__.get("params")
        if params is not None:
            cls.__init__ = params.init_method()  # type: ignore[method-assign]
            cls._parameter_constraints = params.constraints()  # type: ignore[attr-defined]


def declare(*shared: str | Iterable[str] | Params, **params: Param | Any) -> Params:
    """An estimator's parameters.

    Parameters
    ----------
    *shared : str, iterable of str or Params
        Parameters of :data:`SHARED_PARAMS` by name (or a block of names such as
        :data:`PRETRAINED_AUTOENCODER_PARAMS`), with their shared default; or the
        :class:`Params` of another estimator, whole.
    **params : Param or value
        A :class:`Param` declares a parameter of this method; a plain value is the default of
        a shared parameter (included if it is not yet).

    Examples
    --------
    >>> p = declare("n_clusters", "lr", max_iter=Param(300, POSITIVE_INT), lr=0.01)
    >>> list(p), p["lr"].default
    (['n_clusters', 'lr', 'max_iter'], 0.01)
    """
    out: dict[str, Param] = {}
    for item in shared:
        if isinstance(item, Params):
            out.update(item)
            continue
        for name in [item] if isinstance(item, str) else item:
            out[name] = SHARED_PARAMS[name]
    for name, value in params.items():
        if isinstance(value, Param):
            out[name] = value
        elif name in out:
            out[name] = out[name].with_default(value)
        elif name in SHARED_PARAMS:
            out[name] = SHARED_PARAMS[name].with_default(value)
        else:
            raise TypeError(
                f"{name}={value!r}: not a shared parameter; declare it with Param(default, "
                "constraint, ...)"
            )
    return Params(out)


#: The run settings every estimator takes, last in its signature.
RUN_PARAMS = ("pretrain_cache", "device", "precision", "random_state", "verbose")

#: The parameters several estimators share, each declared once, with the library's default
#: (an estimator may declare another default for its own method).
SHARED_PARAMS: dict[str, Param] = {
    # every estimator
    "n_clusters": Param(8, POSITIVE_INT),
    # the name itself is checked by resolve_device, also in fit
    "device": Param("auto", str, torch.device, annotation="str"),
    "precision": Param("fp32", StrOptions(set(PRECISIONS))),
    "random_state": Param(None, "random_state", np.random.Generator, annotation="int | None"),
    "verbose": Param(False, "verbose"),
    # the network presets
    "autoencoder": Param(
        "mlp",
        StrOptions({"mlp", "conv", "resnet"}),
        SequenceOf(POSITIVE_INT),
        torch.nn.Module,
        annotation="str | Sequence[int] | nn.Module",
    ),
    "embedding_dim": Param(10, POSITIVE_INT),
    "hidden_dims": Param((500, 500, 2000), SequenceOf(POSITIVE_INT, min_len=0)),
    "activation": Param("relu", StrOptions({*ACTIVATIONS, *IDENTITY_NAMES})),
    # the code layer's: linear in the DEC family; sigmoid in CCAE's network
    "embedding_activation": Param("linear", StrOptions({*ACTIVATIONS, *IDENTITY_NAMES})),
    "batch_norm": Param(False, "boolean"),
    "image_shape": Param(
        None, None, SequenceOf(POSITIVE_INT, length=3), annotation="Sequence[int] | None"
    ),
    # the shared autoencoder pretraining
    # "steps": the method's epoch count (``pretrain_epochs_base``), counted in steps on small
    # data; "auto": "steps" where the method's ``pretrain_counts_steps`` says so, else the count
    "pretrain_epochs": Param(
        "auto", NON_NEGATIVE_INT, StrOptions({"auto", "steps"}), annotation="int | str"
    ),
    "pretrain_lr": Param(1e-3, POSITIVE_REAL),
    "pretrain_loss": Param("mse", StrOptions(set(PRETRAIN_LOSSES))),
    # None or 0: no early stopping
    "pretrain_patience": Param(None, None, NON_NEGATIVE_INT, annotation="int | None"),
    "pretrain_corruption": Param(0.0, Interval(Real, 0, 1, closed="left")),
    "center_inputs": Param("auto", "boolean", StrOptions({"auto"}), annotation="bool | str"),
    "pretrain_cache": Param(False, "boolean", str, os.PathLike, annotation="bool | str"),
    "batch_size": Param(256, POSITIVE_INT),
    "n_init": Param(20, POSITIVE_INT),
    # the clustering stage's training
    "epochs": Param(50, NON_NEGATIVE_INT),
    "optimizer": Param("adam", StrOptions(set(OPTIMIZERS))),
    "lr": Param(1e-3, POSITIVE_REAL),
    "momentum": Param(0.9, FRACTION),
    "lam": Param(1.0, NON_NEGATIVE_REAL),
    "rec_loss": Param("sum", StrOptions(set(REC_LOSSES))),
}

#: The parameters of every method built on the shared pretrained autoencoder (AE+k-means, DEC,
#: IDEC, DCN, DKM, CT, CCAE, k-DAE, DAMIC).
PRETRAINED_AUTOENCODER_PARAMS = (
    "n_clusters",
    "autoencoder",
    "embedding_dim",
    "activation",
    "embedding_activation",
    "batch_norm",
    "image_shape",
    "pretrain_epochs",
    "pretrain_lr",
    "pretrain_loss",
    "pretrain_patience",
    "pretrain_corruption",
    "center_inputs",
    "batch_size",
    "n_init",
    *RUN_PARAMS,
)

#: The pretraining's :class:`~aeclust.pretrain.PretrainConfig` field of each estimator
#: parameter that sets it (the bench's ``[pretrain]`` keys are these and the network's).
PRETRAIN_CONFIG_FIELDS = {
    "pretrain_epochs": "epochs",
    "batch_size": "batch_size",
    "pretrain_lr": "lr",
    "pretrain_optimizer": "optimizer",
    "pretrain_loss": "loss",
    "pretrain_patience": "patience",
    "pretrain_corruption": "corruption",
}

#: The parameters of the shared network and its pretraining, which a benchmark protocol's
#: ``[pretrain]`` section may set for every method at once.
PRETRAIN_KEYS = (
    "autoencoder",
    "embedding_dim",
    "hidden_dims",
    "activation",
    "embedding_activation",
    "batch_norm",
    *PRETRAIN_CONFIG_FIELDS,
    "center_inputs",
)
