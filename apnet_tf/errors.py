"""The one exception type that library functions raise for bad input, and the checks of
options shared by several commands."""

import operator

__all__ = ["ApnetError", "SEED_MAX", "require_at_least", "check_seed", "first_line"]

#: The largest seed NumPy and Keras take (``np.random.default_rng``, ``set_random_seed``).
SEED_MAX = 2**32 - 1


class ApnetError(Exception):
    """Bad input or state, described in one line that names the file and the problem.

    The command line prints the message and exits non-zero; no traceback reaches the user.
    """


def require_at_least(value, minimum, flag: str):
    """``value`` when it is at least ``minimum``; else ApnetError naming the flag.

    For the counts the commands take (``--mc``, ``--batch-size``, ``--epochs``): checked before
    any work, so a bad one costs nothing and deletes nothing.
    """
    if not value >= minimum:
        raise ApnetError(f"{flag}: must be at least {minimum}, got {value!r}")
    return value


def check_seed(value, flag: str = "--seed"):
    """``value`` when it is a whole number from 0 to ``SEED_MAX``; else ApnetError naming the flag.

    Every command that takes a seed calls this before any work or deletion: NumPy and Keras
    refuse other seeds only once they are used, after an ``--overwrite`` has cleared the folder.
    """
    try:
        whole = operator.index(value)  # int and NumPy integers, not 1.5
    except TypeError:
        whole = None
    if whole is None or not 0 <= whole <= SEED_MAX:
        raise ApnetError(f"{flag}: must be a whole number from 0 to {SEED_MAX}, got {value!r}")
    return whole


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type name when it has none)."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
