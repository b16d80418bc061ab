"""The README runs as written: its ```console transcripts, in order, in a temporary folder,
each command's whole output compared (the convention: ``transcripts.py``; its own tests:
``test_transcripts.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transcripts import environment, run_steps, transcript, workspace

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path):
    """Runs every ```console command of README.md in order."""
    if not (SHARED / "data" / "apogee_dr13" / "apStar").is_dir():
        pytest.skip("the README's examples read the real files in ../shared/data")
    steps = transcript((REPO / "README.md").read_text(), "README.md")
    assert len(steps) >= 4
    run_steps(steps, "README.md", workspace(tmp_path, REPO, SHARED),
              environment(tmp_path, REPO))
