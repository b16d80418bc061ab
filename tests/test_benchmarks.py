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


sys.path.insert(0, str(REPO / "bench"))
import _recipe  # noqa: E402
import benchmarks_md  # noqa: E402
from md import _render  # noqa: E402

#: Scripts whose figures come from a network trained with a recipe (in the run, or a run folder
#: they load): their results files record that recipe.
TRAINED = {"records.py", "train.py", "determinism.py", "accuracy.py", "photometry.py",
           "time_to_accuracy.py", "precision.py", "calibration.py", "calibration_cost.py",
           "information.py", "cool_bias.py", "spikes.py", "fit_anet3.py"}
#: "default" that is not about the training recipe: other commands' defaults, and the words
#: that say what today's default is beside an older recipe.
NOT_A_RECIPE_CLAIM = re.compile(r"`(?:calibrate|infer)` with its defaults|today's default: [^)]*")
RECIPE_CLAIM = re.compile(r"(?<!then-)\bdefaults?\b(?! of `)")


def page_sections(text: str) -> list[tuple[str, str]]:
    return [(part.splitlines()[0], part) for part in text.split("\n## ")[1:]]


def test_every_target_says_whether_it_is_met():
    """Every target on the page is judged, met or NOT met, by bench/md/_render.py's ``target``."""
    text = (REPO / "BENCHMARKS.md").read_text()
    unjudged = []
    for m in re.finditer(r"\btargets?\b", text):
        clause = re.split(r"[)|\n]", text[m.start():])[0]
        if not re.search(r": (met|NOT met)\b", clause):
            unjudged.append(clause)
    assert unjudged == []
    assert "NOT met" in text  # the judgement is made, not assumed


def test_target_lines_are_computed_from_the_figure():
    assert _render.target(3.4, ">=", 3.5, unit="x") == "target >= 3.5x: NOT met"
    assert _render.target(3.5, ">=", 3.5, unit="x") == "target >= 3.5x: met"
    assert _render.target(0.371, "<=", 1 / 3, "1/3") == "target <= 1/3: NOT met"
    assert _render.target(2.99, "<", 3, unit=" GB") == "target < 3 GB: met"


def test_every_results_file_records_its_recipe():
    current = _recipe.current_defaults()
    for path in sorted(RESULTS.glob("*.json")):
        rec = json.loads(path.read_text())
        assert set(rec.get("recipe_defaults", {})) <= set(current), path
        assert rec["recipe_defaults"]["batch_size"] >= 1, path
        if rec["script"] in TRAINED:
            assert set(rec.get("recipe") or {}) >= {"batch_size", "precision"}, path


def test_no_section_claims_the_default_recipe_for_another_recipe():
    """A section that says "default" of the recipe cites only results files whose recorded
    recipe is today's default (training/recipes.py); older ones say which recipe they ran."""
    text = (REPO / "BENCHMARKS.md").read_text()
    wrong = []
    for title, part in page_sections(text):
        claim = RECIPE_CLAIM.search(NOT_A_RECIPE_CLAIM.sub(" ", part))
        if claim is None:
            continue
        for name in re.findall(r"Source: `bench/results/([\w.-]+)\.json`", part):
            rec = json.loads((RESULTS / f"{name}.json").read_text())
            if rec.get("recipe") is not None and not _render.is_default(rec):
                wrong.append(f"{title}: '{claim.group(0)}' ({name}.json: "
                             f"{_render.recipe_words(rec)})")
    assert wrong == []


def test_a_changed_default_recipe_changes_the_page(monkeypatch):
    """If training/recipes.py's default changes, the sections measured with the old default no
    longer say "today's default recipe" (and --check fails until they are measured again)."""
    page = benchmarks_md.page()
    assert "today's default recipe" in page
    changed = {**_recipe.current_defaults(), "batch_size": 7}
    monkeypatch.setattr(_render, "current_defaults", lambda: changed)
    after = benchmarks_md.page()
    assert "today's default recipe" not in after
    assert "today's default: batch_size 7" in after


def test_the_recipe_history_reader_agrees_with_the_code():
    """bench/_recipe.py reads a commit's default recipe from its source without importing it:
    on this checkout's committed recipes.py it gives what importing it gives."""
    proc = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "apnet_tf/training/recipes.py",
                           "apnet_tf/constants.py"], cwd=REPO)
    if proc.returncode != 0:
        import pytest

        pytest.skip("recipes.py or constants.py differ from HEAD (or no git)")
    assert _recipe.defaults_at("HEAD") == _recipe.current_defaults()
