"""Compute precision of training: float32, or mixed bfloat16 where the hardware computes it."""

from __future__ import annotations

import tensorflow as tf

from apnet_tf.constants import PRECISIONS
from apnet_tf.errors import ApnetError

__all__ = ["bfloat16_is_native", "resolve_precision"]


def bfloat16_is_native() -> bool:
    """Whether this machine computes bfloat16 in hardware.

    True for GPUs of compute capability 8.0 or newer (A100, H100) and for CPUs with AVX512_BF16 or
    AMX (Linux /proc/cpuinfo flags). Elsewhere bfloat16 is emulated and slower than float32.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return all(tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0))
                   >= (8, 0) for g in gpus)
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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
