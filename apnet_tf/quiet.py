"""Start-up lines of native (C++) libraries, silenced around the calls known to print them."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["native_stderr_silenced"]


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block.

    TensorFlow's C++ start-up (oneDNN, CUDA probing) and LiteRT's "Created TensorFlow Lite XNNPACK
    delegate" write to the descriptor directly, below Python; LiteRT's logger has no level a
    Python program can set (TF_CPP_MIN_LOG_LEVEL does not reach it). Use it only around such a
    call: Python exceptions still propagate and are reported after the block.
    """
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
