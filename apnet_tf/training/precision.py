"""Compute precision of training: float32, or mixed bfloat16 where the hardware computes it."""

from __future__ import annotations

from apnet_tf.constants import PRECISIONS
from apnet_tf.errors import ApnetError
from apnet_tf.model.precision import auto_precision

__all__ = ["resolve_precision"]


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``model.precision.auto_precision()`` (mixed_bfloat16 where the hardware
    computes bfloat16, else float32); float32 and mixed_bfloat16 as given.

    Mixed precision computes the convolutions and fc1, fc2 in bfloat16 and keeps float32 weights,
    loss and outputs; its speed and accuracy are measured by bench/train.py and
    bench/time_to_accuracy.py (BENCHMARKS.md). ``auto`` is the default recipe's precision; the
    paper recipe trains in float32. Saved models always compute in float32.
    """
    if precision == "auto":
        return auto_precision()
    if precision not in PRECISIONS:
        raise ApnetError(f"unknown precision {precision!r}; choose auto or one of "
                         f"{', '.join(PRECISIONS)}")
    return precision
