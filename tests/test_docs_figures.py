"""The guide's benchmark figures come from the results files, never typed: every figure that a
cited ``bench/results/*.json`` holds is printed by the ``{bench}`` role
(docs/_ext/bench_figures.py), every citation of a Benchmarks section names one that exists, and no
sentence calls a figure the default recipe's when its results file recorded another recipe."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "bench"))

from md import _render  # noqa: E402
from md.calibration import COVERAGE_BAND  # noqa: E402

from apnet_tf.model.calibration import ONE_SIGMA  # noqa: E402

#: Keys of a results file that hold how it ran (survey sizes, seeds, batch, draws, counts of
#: inputs), not what it measured: a page may type these like any setting.
SETTINGS = {"n", "n_stars", "n_files", "n_train", "seed", "survey_seed", "seeds", "stars",
            "stars_infer", "survey_stars", "test_stars", "real_spectra", "real_dr13_files",
            "files", "distinct_files", "dr17_files", "batch", "steps", "mc", "mc_stars_per_call",
            "torch_threads", "stars_per_stratum", "train_stars_in_split", "dev_stars_in_split",
            "recipe", "recipe_overrides", "overrides", "default_batch", "train_batch"}
#: Numbers the code defines that a measured figure may happen to equal: the coverage a
#: calibration aims at and the band every cell must keep.
CONSTANTS = (ONE_SIGMA, *COVERAGE_BAND)
ROLE = re.compile(r"(?<!`)\{bench(-recipe)?\}`([^`]*)`")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")
NUMBER = re.compile(r"(?<![\w.,/-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?!(?!x\b)[\w/]|\.\d)")
CITE = re.compile(r"\[Benchmarks\]\(benchmarks\.md\),?\s+(?:section\s+)?['\"]([^'\"]+)['\"]")
FILE = re.compile(r"bench/results/([\w.-]+)\.json")
SCRIPT = re.compile(r"bench/(\w+)\.py")
#: A figure's form: a number with a unit of time, size, rate or ratio.
UNIT = re.compile(r"(?:[-–]\d[\d,.]*)?\s?"
                  r"(%|x\b|\s(?:s|ms|min|h|MiB|MB|GB|spectra/s|stars/s|files/s)\b)")
#: Numbers in that form that are not measurements: (page, as typed) -> why.
NOT_MEASURED = {
    ("serving.md", "99%"): "the share of fc1, fc2, fc3 in the parameters: the architecture",
    ("serving.md", "94%"): "the share of fc1 in the parameters: the architecture",
    ("uncertainties.md", "68.3%"): "the 1-sigma coverage, model.calibration.ONE_SIGMA",
    ("uncertainties.md", "16%"): "1 / sqrt(2 mc) at the calibration's mc = 20",
    ("published-networks.md", "1.25x"): "astra's error model for APOGEE Net III: its constant",
    ("training.md", "277MiB"): "72.6 M float32 parameters: the architecture's size",
}
#: A statement that figures are the default recipe's ("the defaults", "default recipe", ...).
HOW = "print it with {bench}`NAME:PATH` (docs/_ext/bench_figures.py)"
#: Not a claim: the defaults of an earlier or a named commit.
CLAIM = re.compile(r"(?<!earlier )(?<!then-)\bdefaults?\b(?! of (?:an? |the )?(?:earlier|older|`))")


def guide_pages() -> list[Path]:
    """The pages a user reads: docs/*.md but the two that include a generated page."""
    return sorted(p for p in DOCS.glob("*.md") if p.name not in ("benchmarks.md", "bad-input.md"))


def without_fences(text: str) -> str:
    """The text with every fenced block blanked, line numbers kept."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def prose(text: str) -> str:
    """What a page types itself: no fenced blocks, no inline code, no roles."""
    return CODE.sub(" ", ROLE.sub(" ", without_fences(text)))


def sections() -> dict[str, set[str]]:
    """BENCHMARKS.md's sections (titles and bold leads) -> the results files of its Source
    lines."""
    text = (REPO / "BENCHMARKS.md").read_text()
    out = {}
    for part in text.split("\n## ")[1:]:
        title = part.splitlines()[0].split(" (`bench/")[0].strip()
        names = set(re.findall(r"Source: `bench/results/([\w.-]+)\.json`", part))
        for name in [title, *re.findall(r"\n\*\*([^*\n]+)\*\*", part)]:
            out[name] = names
    return out


def cited(text: str, titles: dict[str, set[str]]) -> set[str]:
    """The results files a piece of text cites: by role, by path, by script, by section."""
    names = {ref.split(":")[0].strip() for _, ref in ROLE.findall(text)
             if (RESULTS / f"{ref.split(':')[0].strip()}.json").is_file()}
    names |= {n for n in FILE.findall(text) if (RESULTS / f"{n}.json").is_file()}
    names |= {s for s in SCRIPT.findall(text) if (RESULTS / f"{s}.json").is_file()}
    for title in CITE.findall(text):
        names |= titles.get(" ".join(title.split()), set())
    return names


def figures(name: str) -> list[tuple[str, float]]:
    """(key path, value) of every measured number of a results file."""
    out = []

    def walk(x, path):
        if isinstance(x, bool):
            return
        if isinstance(x, (int, float)):
            out.append(("/".join(map(str, path)), float(x)))
        elif isinstance(x, dict):
            for k, v in x.items():
                if k not in SETTINGS:
                    walk(v, path + [k])
        elif isinstance(x, list):
            for i, v in enumerate(x):
                # a coverage cell's fourth value is its count of stars
                if not (len(path) > 1 and path[-2] == "coverage" and i == 3):
                    walk(v, path + [i])

    walk(json.loads((RESULTS / f"{name}.json").read_text())["figures"], [])
    return out


def typed_numbers(text: str, small: bool = False):
    """(line, printed, value, decimals, end) of every number with at least two significant
    digits; whole numbers below 100 only with ``small`` (they are mostly counts and settings:
    batch 32, 12 convolutions)."""
    for m in NUMBER.finditer(text):
        whole, frac = m.group(1), m.group(2) or ""
        digits = (whole.replace(",", "") + frac[1:]).lstrip("0")
        digits = digits if frac else digits.rstrip("0")
        if len(digits) >= 2 and (small or frac or int(whole.replace(",", "")) >= 100):
            yield (text.count("\n", 0, m.start()) + 1, m.group(0),
                   float((whole + frac).replace(",", "")), len(frac) - 1 if frac else 0, m.end())


def paragraphs(text: str):
    """(first line, paragraph) of a page, fenced blocks left out."""
    text = without_fences(text)
    start = 0
    for m in re.finditer(r"\n\s*\n|$", text):
        if text[start:m.start()].strip():
            yield text.count("\n", 0, start) + 1, text[start:m.start()]
        start = m.end()


def sentences(text: str):
    """(first line, sentence) of a page's prose, fenced blocks left out; a semicolon ends one."""
    text = without_fences(text)
    start = 0
    for m in re.finditer(r"(?<=[.:])\s+(?=[A-Z(`{\[*]|\n)|(?<=;)\s+|\n\s*\n|$", text):
        chunk = text[start:m.start() + 1]
        if chunk.strip():
            yield text.count("\n", 0, start) + 1, chunk
        start = m.end()


def typed_figures(page: Path) -> list[str]:
    """Numbers typed in a paragraph that equal, to their printed precision, a figure of a
    results file the paragraph cites."""
    titles, hits = sections(), []
    for first, paragraph in paragraphs(page.read_text()):
        values = [(n, k, v) for n in sorted(cited(paragraph, titles)) for k, v in figures(n)]
        for line, printed, typed, decimals, _ in typed_numbers(prose(paragraph)):
            if any(round(c, decimals) == typed for c in CONSTANTS):
                continue
            same = [f"{n}.json {k}" for n, k, v in values if round(v, decimals) == typed]
            if same:
                hits.append(f"{page.name}:{first + line - 1}: {printed} is {same[0]}")
    return hits


def headed_parts(text: str):
    """(first line, part) of a page cut at its headings, fenced blocks left out."""
    lines = without_fences(text).split("\n")
    starts = [0] + [i for i, line in enumerate(lines) if line.startswith("#")] + [len(lines)]
    for a, b in zip(starts, starts[1:]):
        if b > a:
            yield a + 1, "\n".join(lines[a:b])


def figure_forms(page: Path) -> list[str]:
    """Numbers in the form of a benchmark figure (a time, size, rate, ratio or percentage, or a
    range of them) typed under a heading whose text cites a results file: they belong in the
    results file, so a figure that disagrees with its file is caught too."""
    titles, hits = sections(), []
    for first, part in headed_parts(page.read_text()):
        if not cited(part, titles):
            continue
        text = prose(part)
        for line, printed, _, _, end in typed_numbers(text, small=True):
            unit = UNIT.match(text, end)
            typed = f"{printed}{unit.group(0).strip() if unit else ''}"
            if unit and (page.name, typed.replace(" ", "")) not in NOT_MEASURED:
                hits.append(f"{page.name}:{first + line - 1}: {typed}")
    return hits


def default_claims(page: Path) -> list[str]:
    """Sentences that say "default" and cite a results file whose recipe is not today's."""
    titles, hits = sections(), []
    for line, sentence in sentences(page.read_text()):
        names = cited(sentence, titles)
        claim = CLAIM.search(prose(CITE.sub(" ", sentence)))
        if not (names and claim):
            continue
        for name in sorted(names):
            rec = json.loads((RESULTS / f"{name}.json").read_text())
            if rec.get("recipe") is not None and not _render.is_default(rec):
                hits.append(f"{page.name}:{line}: '{claim.group(0)}' with {name}.json "
                            f"({_render.recipe_words(rec)})")
    return hits


@pytest.mark.parametrize("page", guide_pages(), ids=lambda p: p.name)
def test_no_page_types_a_figure_of_its_results_file(page):
    assert typed_figures(page) == [], HOW


@pytest.mark.parametrize("page", guide_pages(), ids=lambda p: p.name)
def test_no_page_types_a_benchmark_figure_beside_a_citation(page):
    assert figure_forms(page) == [], HOW


@pytest.mark.parametrize("page", guide_pages(), ids=lambda p: p.name)
def test_no_page_calls_older_figures_the_default_recipe(page):
    assert default_claims(page) == []


def test_every_cited_section_and_role_exists():
    titles = sections()
    bad = []
    for page in guide_pages():
        text = page.read_text()
        bad += [f"{page.name}: section '{t}'" for t in CITE.findall(text)
                if " ".join(t.split()) not in titles]
        for recipe, ref in ROLE.findall(text):
            try:
                if recipe and _render.load(ref) is None:
                    raise KeyError(f"no bench/results/{ref}.json")
                _render.figure(ref) if not recipe else None
            except (KeyError, IndexError, TypeError, ValueError) as e:
                bad.append(f"{page.name}: {{bench{recipe}}}`{ref}`: {e!r}")
    assert bad == []


def test_the_checks_catch_a_typed_figure_and_a_stale_claim(tmp_path, monkeypatch):
    """Each check fires on a page that types a figure of export.json, types one in a figure's
    form that agrees with no file (the old TFLite table's int8 range), or calls figures the
    default recipe's once the default has changed."""
    page = tmp_path / "page.md"
    worst = json.loads((RESULTS / "export.json").read_text())["figures"]["tflite_int8"]
    a, b = sorted(worst["max_pct_of_std"])[:2]
    page.write_text(f"## Export\n\nThe int8 file deviates by {a:.2f} and {b:.1f}-99.9 "
                    "([Benchmarks](benchmarks.md), 'Export').\n\n"
                    "The int8 file is off by **24-45% of a standard deviation** "
                    "([Benchmarks](benchmarks.md), 'Export').\n\n"
                    "The default reaches the figures in [Benchmarks](benchmarks.md), "
                    "'Does it learn?'.\n")
    typed = typed_figures(page)
    assert any(f"{a:.2f}" in h for h in typed) and any(f"{b:.1f}" in h for h in typed), typed
    assert any("24" in h for h in figure_forms(page)), figure_forms(page)
    changed = {**_render.current_defaults(), "batch_size": 7}
    monkeypatch.setattr(_render, "current_defaults", lambda: changed)
    assert any("accuracy.json" in h for h in default_claims(page)), default_claims(page)
