"""BENCHMARKS.md holds only figures that a script in bench/ wrote, with the commit they measured."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def test_every_results_file_names_its_script_commit_and_command():
    files = sorted(RESULTS.glob("*.json"))
    assert files
    for path in files:
        rec = json.loads(path.read_text())
        assert (REPO / "bench" / rec["script"]).is_file(), path
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", rec["commit"]), path
        assert rec["command"].startswith("bench/" + rec["script"]), path
        assert rec["date"].startswith("20") and rec["machine"] and rec["figures"], path


def test_benchmarks_page_is_made_from_the_results():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "benchmarks_md.py"), "--check"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, "BENCHMARKS.md is stale: run python bench/benchmarks_md.py"
    text = (REPO / "BENCHMARKS.md").read_text()
    for path in RESULTS.glob("*.json"):
        assert f"bench/results/{path.name}" in text


def test_no_benchmark_figures_in_code_comments():
    pattern = re.compile(r"\d[\d,.]*\s*(spectra/s|files/s|stars/s|rows/s|x faster|× faster|% faster"
                         r"|% slower)")
    hits = [f"{p.relative_to(REPO)}:{i}" for p in (REPO / "apnet_tf").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []
