"""The README runs as written: its ```console transcripts, in order, in a temporary folder.

The convention (also stated in the README, above its first transcript): in a block fenced
```console, a line starting with "$ " is a command (a trailing backslash continues it on the next
line); the next non-empty line is the first line the command prints (stdout and stderr together),
where any number matches any number, since trained models differ in the last digits between
machines; "[exit N]" is its exit status (0 when absent); a command followed directly by "[exit N]"
prints nothing.
Blocks fenced ```text are shown, not run (the README says why where it matters).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NUMBER = r"-?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?"


@dataclasses.dataclass
class Step:
    command: str
    line: int
    first: str | None = None
    exit: int | None = None
    silent: bool = False


def transcript(text: str) -> list[Step]:
    """The commands of the ```console blocks, in order, with what each must print first."""
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
        if steps and status and steps[-1].exit is None:
            steps[-1].exit = int(status.group(1))
            steps[-1].silent = steps[-1].first is None
        elif steps and line.strip() and steps[-1].first is None and steps[-1].exit is None:
            steps[-1].first = line.rstrip()
    return steps


def loose(expected: str) -> re.Pattern:
    """``expected`` as a pattern in which every number matches any number."""
    parts = re.split(f"({NUMBER})", expected)
    return re.compile("".join(NUMBER if k % 2 else re.escape(p) for k, p in enumerate(parts)))


def test_transcript_parser():
    text = ("```console\n$ a --x 1 \\\n    --y 2\nwrote 3 files (4.5 MiB)\nmore\n[exit 0]\n\n"
            "$ b\n[exit 1]\n```\n```text\n$ not run\n```\n")
    a, b = transcript(text)
    assert a.command == "a --x 1 --y 2" and a.first == "wrote 3 files (4.5 MiB)" and a.exit == 0
    assert b.command == "b" and b.exit == 1 and b.silent
    assert loose(a.first).fullmatch("wrote 12 files (0.25 MiB)")
    assert not loose(a.first).fullmatch("wrote 12 folders (0.25 MiB)")


def _environment(tmp_path: Path) -> dict:
    """PATH with an ``apnet-tf`` that runs this checkout, as an installed package would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "apnet-tf"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m apnet_tf.cli "$@"\n')
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("APNET_PROGRESS",
                                                             "TF_CPP_MIN_LOG_LEVEL")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
               f"{env.get('PATH', '')}", PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1",
               COLUMNS="200")
    return env


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path):
    """Runs every ```console command of README.md in order (about 3 minutes on 2 cores)."""
    if not (SHARED / "data" / "apogee_dr13" / "apStar").is_dir():
        pytest.skip("the README's examples read the real files in ../shared/data")
    steps = transcript((REPO / "README.md").read_text())
    assert len(steps) >= 10
    work = tmp_path / "repo"  # laid out like the repository root: ../shared beside it
    work.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)
    (work / "examples").symlink_to(REPO / "examples")
    env = _environment(tmp_path)
    for step in steps:
        res = subprocess.run(["bash", "-c", step.command], cwd=work, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        where = f"README.md line {step.line}: $ {step.command}\n{res.stdout[-3000:]}"
        assert res.returncode == (step.exit or 0), where
        lines = [line.rstrip() for line in res.stdout.splitlines() if line.strip()]
        if step.silent:
            assert not lines, where
        elif step.first is not None:
            assert lines and loose(step.first).fullmatch(lines[0]), where
