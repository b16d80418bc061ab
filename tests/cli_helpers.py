"""Helpers for the bad-input tests: run a command in-process and check its one-line error."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from typer.testing import CliRunner

from apnet_tf.cli.app import app


def cli(*args):
    """Run ``apnet-tf *args`` in this process; a click Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(res, *words: str, code: int = 1) -> str:
    """The command exited with ``code``, printed no traceback, and its stderr is one line
    holding every one of ``words``. Returns that line."""
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"uncaught {type(res.exception).__name__}: {res.exception}\n"
                             f"{res.output}")
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def snapshot(folder: str | os.PathLike) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path: to show nothing was changed."""
    root = Path(folder)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
