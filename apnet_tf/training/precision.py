"""Compute precision of training: float32, or mixed bfloat16 where the hardware computes it."""

from __future__ import annotations

from apnet_tf.constants import PRECISIONS
from apnet_tf.errors import ApnetError
from apnet_tf.model.precision import bfloat16_is_native

__all__ = ["resolve_precision"]


def resolve_precision(precision: str) -> str:
    """``auto`` -> mixed_bfloat16 where the hardware has it (``bfloat16_is_native``), else float32.

    Mixed precision computes the convolutions and fc1, fc2 in bfloat16 and keeps float32 weights,
    loss and outputs; its speed and accuracy are measured by bench/train.py and bench/accuracy.py
    (BENCHMARKS.md). It is opt-in, so that a run gives the same kind of numbers on every machine.
    Saved models always compute in float32.
    """
    if precision == "auto":
        return "mixed_bfloat16" if bfloat16_is_native() else "float32"
    if precision not in PRECISIONS:
        raise ApnetError(f"unknown precision {precision!r}; choose auto or one of "
                         f"{', '.join(PRECISIONS)}")
    return precision
