"""The one exception type that library functions raise for bad input."""

__all__ = ["ApnetError", "require_at_least", "first_line"]


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


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type name when it has none)."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
