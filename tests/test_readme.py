"""The README runs as written: its ```console transcripts, in order, in a temporary folder,
each command's whole output compared (the convention: ``transcripts.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transcripts import environment, mismatch, run_steps, transcript, workspace

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def test_transcript_parser():
    text = ("```console\n$ a --x 1 \\\n    --y 2\nwrote 3 files (4.5 MiB)\nmore\n[exit 0]\n\n"
            "$ b\n[exit 1]\n```\n```text\n$ not run\n```\n")
    a, b = transcript(text)
    assert a.command == "a --x 1 --y 2" and a.output == ["wrote 3 files (4.5 MiB)", "more"]
    assert a.exit == 0 and b.command == "b" and b.exit == 1 and b.output == []


def test_whole_transcripts_are_compared():
    expected = ["wrote 3 files (4.5 MiB)", "  teff (K)   943.4  777.8", "done"]
    assert mismatch(expected, ["wrote 12 files (0.25 MiB)", "  teff (K)  1013.0   77.8",
                               "", "done"]) is None
    # a later line differs, a line is missing, a table gains a column, a word changes, a line
    # is added
    assert "line 3" in mismatch(expected, ["wrote 1 files (1 MiB)", "teff (K) 1 2", "failed"])
    assert mismatch(expected, ["wrote 1 files (1 MiB)", "teff (K) 1 2"])
    assert mismatch(expected, ["wrote 1 files (1 MiB)", "teff (K) 1 2 3", "done"])
    assert mismatch(expected, ["wrote 1 folders (1 MiB)", "teff (K) 1 2", "done"])
    assert mismatch(expected, ["wrote 1 files (1 MiB)", "teff (K) 1 2", "done", "extra"])
    # "..." stands for any lines, none included
    assert mismatch(["epochs:", "...", "best"], ["epochs:", "1 0.5", "2 0.4", "best"]) is None
    assert mismatch(["epochs:", "...", "best"], ["epochs:", "best"]) is None
    assert mismatch(["epochs:", "...", "best"], ["epochs:", "1 0.5"])


def test_an_edited_transcript_fails():
    """Every recorded output line counts: a transcript that lost or changed a line (as the
    3-column Table 3 of an older README did) no longer matches what the command printed."""
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for step in transcript(page.read_text()):
            if len([x for x in step.output if x != "..."]) < 2:
                continue
            assert mismatch(step.output, step.output) is None or "..." in step.output
            assert mismatch(step.output, step.output[:-1]), (page, step.line)


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path):
    """Runs every ```console command of README.md in order."""
    if not (SHARED / "data" / "apogee_dr13" / "apStar").is_dir():
        pytest.skip("the README's examples read the real files in ../shared/data")
    steps = transcript((REPO / "README.md").read_text())
    assert len(steps) >= 4
    run_steps(steps, "README.md", workspace(tmp_path, REPO, SHARED),
              environment(tmp_path, REPO))
