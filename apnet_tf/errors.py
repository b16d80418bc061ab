"""The one exception type that library functions raise for bad input."""


class ApnetError(Exception):
    """Bad input or state, described in one line that names the file and the problem.

    The command line prints the message and exits non-zero; no traceback reaches the user.
    """
