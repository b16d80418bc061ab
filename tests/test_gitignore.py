"""Following the README and the guide in a clone leaves nothing for git to show: the virtual
environment, the built guide and the examples' outputs are ignored."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO,
                          capture_output=True).returncode == 0


def test_the_folders_the_instructions_create_are_ignored():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    readme = (REPO / "README.md").read_text()
    venv = re.search(r"python3 -m venv (\S+)", readme).group(1)
    build = re.search(r"sphinx-build -b html docs ([\w/]+)", readme).group(1)
    made = [f"{venv}/bin/python", f"{build}/index.html", "demo_out/catalog.fits",
            "mini/labels.csv", "mini_records/manifest.json", "mini_run/best.keras",
            "mini_catalog.fits"]
    assert [p for p in made if not _ignored(p)] == []
    assert not _ignored("apnet_tf/wording.py") and not _ignored("docs/index.md")
