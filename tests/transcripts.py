"""Shell transcripts in the README and the docs, parsed and compared whole.

The convention (stated in the README above its first transcript, and in the docs): in a block
fenced ```console, a line starting with "$ " is a command (a trailing backslash continues it on
the next line); every line after it, up to the next command or the end of the block, is what it
prints (stdout and stderr together), blank lines aside. "[exit N]" is its exit status (0 when
absent). In an output line any number matches any number (trained models differ in their last
digits between machines) and a run of spaces matches any run of spaces (columns re-align around
wider numbers); everything else, the count of lines and of numbers on each line included, must be
as written. A line "..." stands for any number of lines (the epochs of a run that stops early).
Blocks fenced ```text are shown, not run.
"""

from __future__ import annotations

import dataclasses
import functools
import re

NUMBER = r"[-+]?(?:\d+(?:[.,]\d+)*(?:\.\d*)?(?:e[-+]?\d+)?|nan|inf)"
ELLIPSIS = "..."


@dataclasses.dataclass
class Step:
    command: str
    line: int  # where the command starts in its file
    output: list[str] = dataclasses.field(default_factory=list)  # expected non-empty lines
    exit: int = 0


def transcript(text: str) -> list[Step]:
    """The commands of the ```console blocks, in order, each with the lines it must print."""
    steps: list[Step] = []
    block, pending = False, ""
    for i, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            block = (line.strip() == "```console") if not block else False
            continue
        if not block:
            continue
        if pending or line.startswith("$ "):
            cmd = pending + (line[2:] if not pending else line.strip())
            pending = cmd[:-1].rstrip() + " " if cmd.endswith("\\") else ""
            if not pending:
                steps.append(Step(cmd, i))
            continue
        status = re.fullmatch(r"\[exit (\d+)\]", line.strip())
        if steps and status:
            steps[-1].exit = int(status.group(1))
        elif steps and line.strip():
            steps[-1].output.append(line.rstrip())
    return steps


@functools.lru_cache(maxsize=4096)
def loose(expected: str) -> re.Pattern:
    """``expected`` as a pattern: numbers match any number, spaces any run of spaces."""
    parts = re.split(rf"({NUMBER}|\s+)", expected.strip())
    out = []
    for k, part in enumerate(parts):
        if k % 2 == 0:
            out.append(re.escape(part))
        elif part.isspace():
            out.append(r"\s+")
        else:
            out.append(NUMBER)
    return re.compile("".join(out), re.IGNORECASE)


def mismatch(expected: list[str], actual: list[str]) -> str | None:
    """None when ``actual`` (non-empty output lines) matches ``expected`` line for line; else a
    message naming the first line that differs."""
    actual = [a.rstrip() for a in actual if a.strip()]

    @functools.lru_cache(maxsize=None)
    def match(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if expected[i].strip() == ELLIPSIS:
            return any(match(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and bool(loose(expected[i]).fullmatch(actual[j].strip())) \
            and match(i + 1, j + 1)

    if match(0, 0):
        return None
    for k, line in enumerate(expected):  # the first line that cannot be matched in order
        if line.strip() == ELLIPSIS:
            return f"no match after an ellipsis at line {k + 1} of the expected output"
        if k >= len(actual):
            return f"expected line {k + 1} {line!r}, the output ended"
        if not loose(line).fullmatch(actual[k].strip()):
            return f"line {k + 1}: expected {line!r}, got {actual[k]!r}"
    extra = actual[len(expected)]
    return f"{len(actual) - len(expected)} more lines than expected, first: {extra!r}"


def environment(tmp_path, repo) -> dict:
    """PATH with an ``apnet-tf`` that runs this checkout, as an installed package would."""
    import os
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "apnet-tf"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m apnet_tf.cli "$@"\n')
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("APNET_PROGRESS",
                                                             "TF_CPP_MIN_LOG_LEVEL")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.path.dirname(sys.executable)}{os.pathsep}"
               f"{env.get('PATH', '')}", PYTHONPATH=str(repo), PYTHONUNBUFFERED="1",
               COLUMNS="200")
    return env


def workspace(tmp_path, repo, shared):
    """A folder laid out like the repository root: ../shared beside it, examples/ in it."""
    work = tmp_path / "repo"
    work.mkdir()
    (tmp_path / "shared").symlink_to(shared)
    (work / "examples").symlink_to(repo / "examples")
    return work


def run_steps(steps: list[Step], where: str, work, env) -> None:
    """Run each step in ``work`` and assert its exit status and its whole output."""
    import subprocess

    for step in steps:
        res = subprocess.run(["bash", "-c", step.command], cwd=work, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        context = f"{where} line {step.line}: $ {step.command}\n{res.stdout[-3000:]}"
        assert res.returncode == step.exit, context
        problem = mismatch(step.output, res.stdout.splitlines())
        assert problem is None, f"{problem}\n{context}"
