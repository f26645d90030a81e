"""Supervised evaluation of representations: the class separating autoencoders' protocol.

Nousi & Tefas (cluster compacting / class separating autoencoders), Sec. 5.3.2: per-subject
splits (:mod:`~aeclust.evaluation.splits`), the four classifiers
(:mod:`~aeclust.evaluation.classifiers`) and the protocol tying them to encoders fitted on the
training part only (:mod:`~aeclust.evaluation.protocol`), and encoder parameters chosen by
cross-validation inside the training part (:mod:`~aeclust.evaluation.selection`).
``aeclust bench`` runs it for ``kind = "classification"`` protocols
(``benchmarks/protocols/ccae-tables4-5.toml``).
"""

from aeclust.evaluation.classifiers import (
    CLASSIFIERS,
    DEFAULT_PARAMS,
    make_classifier,
    score_classifiers,
)
from aeclust.evaluation.protocol import (
    ENCODERS,
    PAPER_CLASSIFIERS,
    EvaluationResult,
    Representation,
    SplitResult,
    encoder_class,
    evaluate,
    evaluate_split,
)
from aeclust.evaluation.selection import InnerCVEncoder
from aeclust.evaluation.splits import (
    SPLIT_SCHEMES,
    check_split_spec,
    per_class_kfold,
    per_class_random_split,
    split_for_seed,
)

__all__ = [
    "CLASSIFIERS",
    "DEFAULT_PARAMS",
    "ENCODERS",
    "PAPER_CLASSIFIERS",
    "SPLIT_SCHEMES",
    "EvaluationResult",
    "InnerCVEncoder",
    "Representation",
    "SplitResult",
    "check_split_spec",
    "encoder_class",
    "evaluate",
    "evaluate_split",
    "make_classifier",
    "per_class_kfold",
    "per_class_random_split",
    "score_classifiers",
    "split_for_seed",
]
