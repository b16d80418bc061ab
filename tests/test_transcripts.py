"""The transcript convention (``transcripts.py``): counts match exactly, other numbers within a
tolerance, NaN only where NaN is shown, and a block's own tolerances stated above its fence.
Fast: nothing here runs a command."""

from __future__ import annotations

from pathlib import Path

import pytest
from transcripts import Rule, line_problem, mismatch, parse_rules, tolerance_of, transcript

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

WROTE = ["infer: 24 of 24 done in 1.6 s",
         "wrote 24 stars to mini_catalog.fits (1 YSO candidates, 4 flagged BAD; sigma: calibrated)"]
FREE_TIMING = [Rule("done in # s", "free")]


def test_changed_counts_fail():
    """The edit of a wrong run: no stars written and a billion flagged BAD."""
    wrong = ["infer: 24 of 24 done in 1.6 s",
             "wrote 0 stars to mini_catalog.fits (1 YSO candidates, 1e9 flagged BAD; sigma: "
             "calibrated)"]
    assert mismatch(WROTE, WROTE, FREE_TIMING) is None
    problem = mismatch(WROTE, wrong, FREE_TIMING)
    assert problem and problem.startswith("line 2") and "0 is not 24" in problem
    # each count on its own: one star more, one BAD more, a count written as a float
    for star, bad in (("25", "4"), ("24", "5"), ("24", "4.0"), ("24.0", "4")):
        edited = WROTE[1].replace("24 stars", f"{star} stars").replace("4 flagged",
                                                                       f"{bad} flagged")
        assert mismatch(WROTE, [WROTE[0], edited], FREE_TIMING), (star, bad)
    # a count of the progress line too: the timing is free, its counts are not
    assert mismatch(WROTE, ["infer: 23 of 24 done in 1.6 s", WROTE[1]], FREE_TIMING)
    assert mismatch(WROTE, ["infer: 24 of 24 done in 97.0 s", WROTE[1]], FREE_TIMING) is None


def test_a_nan_coverage_fails_where_a_number_is_shown():
    line = ["  teff  dev 1-sigma coverage raw 0.077 -> calibrated 0.683"]
    loose = [Rule("coverage raw # -> calibrated #", "absolute", 0.5)]
    for rules in ((), loose, [Rule("coverage", "free")]):
        problem = mismatch(line, ["  teff  dev 1-sigma coverage raw 0.077 -> calibrated nan"],
                           rules)
        assert problem and "nan where 0.683 is shown" in problem, rules
        assert mismatch(line, ["  teff  dev 1-sigma coverage raw inf -> calibrated 0.683"],
                        rules)
    # NaN where NaN is shown, in any case, and nothing else there
    shown = ["coverage nan 0.5"]
    assert mismatch(shown, ["coverage NaN 0.5"]) is None
    assert mismatch(shown, ["coverage 0.1 0.5"])


def test_default_tolerance_is_five_percent_or_the_last_digit():
    assert line_problem("mean 100.0", "mean 104.9") is None
    assert line_problem("mean 100.0", "mean 105.2")
    assert line_problem("mean -100.0", "mean -95.1") is None
    assert line_problem("mean -100.0", "mean 100.0")  # the sign counts
    # the last printed digit when it is wider than 5%: 2.5 s may be 2.4 or 2.6, not 2.7
    assert line_problem("took 2.5 s", "took 2.6 s") is None
    assert line_problem("took 2.5 s", "took 2.7 s")
    assert line_problem("cov 0.03", "cov 0.04") is None and line_problem("cov 0.03", "cov 0.05")
    assert line_problem("tiny 6.983e-05", "tiny 7.2e-05") is None
    assert line_problem("tiny 6.983e-05", "tiny 7.4e-05")
    # whole numbers (counts, IDs) exactly, whatever their size
    assert line_problem("wrote 1500 stars", "wrote 1501 stars")
    assert line_problem("id 2M05353333-0533333", "id 2M05353333-0533334")
    assert line_problem("id 2M05353333-0533333", "id 2M05353333-0533333") is None


def test_the_words_spaces_and_count_of_numbers_still_count():
    expected = ["wrote 3 files (4.5 MiB)", "  teff (K)   943.4  777.8", "done"]
    assert mismatch(expected, ["wrote 3 files (4.6 MiB)", "teff (K)    943.4   777.8",
                               "", "done"]) is None
    assert "line 3" in mismatch(expected, ["wrote 3 files (4.5 MiB)", "teff (K) 943.4 777.8",
                                           "failed"])
    assert mismatch(expected, ["wrote 3 files (4.5 MiB)", "teff (K) 943.4 777.8"])
    assert mismatch(expected, ["wrote 3 files (4.5 MiB)", "teff (K) 943.4 777.8 1", "done"])
    assert mismatch(expected, ["wrote 3 folders (4.5 MiB)", "teff (K) 943.4 777.8", "done"])
    assert mismatch(expected, ["wrote 3 files (4.5 MiB)", "teff (K) 943.4 777.8", "done", "x"])
    # "..." stands for any lines, none included
    assert mismatch(["epochs:", "...", "best"], ["epochs:", "1 0.5", "2 0.4", "best"]) is None
    assert mismatch(["epochs:", "...", "best"], ["epochs:", "best"]) is None
    assert mismatch(["epochs:", "...", "best"], ["epochs:", "1 0.5"])
    # two numbers written together split the same way on both sides
    assert line_problem("S/N 12.2-42.3 0.5", "S/N 12.3-42.1 0.5") is None
    assert line_problem("S/N 12.2-42.3 0.5", "S/N 12.2-52.3 0.5")


def test_rules_cover_only_the_numbers_they_name():
    rules = parse_rules('<!-- transcript\n"done in # s": free\n"teff (K)", "logg (dex)": 60%\n'
                        '"all # # *": ±0.1\n-->')
    assert rules == [Rule("done in # s", "free"), Rule("teff (K)", "relative", 0.6),
                     Rule("logg (dex)", "relative", 0.6), Rule("all # # *", "absolute", 0.1)]
    # a text covers every number after it on its line, whole-looking ones included
    assert line_problem("Full  teff (K)  868.5   44", "Full  teff (K)  1200   70", rules) is None
    assert line_problem("Full  teff (K)  868.5   44", "Full  teff (K)  1400   70", rules)
    # a template only its #s: the count (*) and the numbers before it stay exact
    line = "raw  all  0.077 0.038  53"
    assert line_problem(line, "raw  all  0.150 0.100  53", rules) is None
    assert line_problem(line, "raw  all  0.200 0.100  53", rules)
    assert line_problem(line, "raw  all  0.150 0.100  54", rules)
    assert tolerance_of(line, line.index("53"), line.index("53") + 2, rules) == ("exact", 0.0)
    # timings are free but must be numbers; the counts around them are not free
    assert line_problem("synth: 200 of 200 done in 2.5 s", "synth: 200 of 200 done in 61 s",
                        rules) is None
    assert line_problem("synth: 200 of 200 done in 2.5 s", "synth: 200 of 199 done in 2.5 s",
                        rules)
    assert line_problem("synth: 200 of 200 done in 2.5 s", "synth: 200 of 200 done in nan s",
                        rules)
    # the later rule counts; "exact" holds a decimal to what is printed
    again = rules + [Rule("all # #", "exact")]
    assert line_problem(line, "raw  all  0.078 0.038  53", again)


@pytest.mark.parametrize("bad", ['"x" free', '"x": 5 percent', 'x: free', '"": free'])
def test_a_rule_that_cannot_be_read_is_an_error(bad):
    with pytest.raises(ValueError, match="not a transcript rule"):
        parse_rules(f"<!-- transcript\n{bad}\n-->", "page.md line 3")


def test_a_comment_binds_only_the_console_block_right_below():
    text = ('<!-- transcript\n"done in # s": free\n-->\n\n```console\n$ a\nx done in 1.0 s\n```\n'
            "\n```console\n$ b\ny\n```\n<!-- transcript\n\"z\": free\n-->\nprose\n```console\n"
            "$ c\n```\n<!-- other comment -->\n```console\n$ d\n```\n")
    a, b, c, d = transcript(text)
    assert a.rules == [Rule("done in # s", "free")] and b.rules == c.rules == d.rules == []
    # a comment inside a fence is what the block shows, not a rule
    shown = transcript("```text\n<!-- transcript\n-->\n```\n```console\n$ e\n```\n")
    assert shown[0].rules == []
    with pytest.raises(ValueError, match="alone"):
        transcript("<!-- transcript: 5% -->\n```console\n$ f\n```\n", "p.md")


def test_transcript_parser():
    text = ("```console\n$ a --x 1 \\\n    --y 2\nwrote 3 files (4.5 MiB)\nmore\n[exit 0]\n\n"
            "$ b\n[exit 1]\n```\n```text\n$ not run\n```\n")
    a, b = transcript(text)
    assert a.command == "a --x 1 --y 2" and a.output == ["wrote 3 files (4.5 MiB)", "more"]
    assert a.exit == 0 and b.command == "b" and b.exit == 1 and b.output == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_documented_transcript_fails_when_edited(page):
    """Each block of the guide and the README, read with its rules: it matches itself, and fails
    when a line is dropped or a count on it is changed."""
    for step in transcript(page.read_text(), str(page)):
        lines = [x for x in step.output if x != "..."]
        assert mismatch(step.output, step.output, step.rules) is None, (page, step.line)
        if len(lines) >= 2:
            assert mismatch(step.output, step.output[:-1], step.rules), (page, step.line)
        for k, line in enumerate(step.output):
            if "stars" in line or " of " in line:
                edited = _bump_first_count(line, step.rules)
                if edited:
                    out = step.output[:k] + [edited] + step.output[k + 1:]
                    assert mismatch(step.output, out, step.rules), (page, step.line, edited)


def _bump_first_count(line: str, rules) -> str | None:
    """``line`` with its first whole number that no rule covers one larger; None if none."""
    import re

    for m in re.finditer(r"(?<![\w.])\d+(?![\w.])", line):
        if tolerance_of(line.strip(), m.start() - (len(line) - len(line.lstrip())),
                        m.end() - (len(line) - len(line.lstrip())), tuple(rules)) == (
                "exact", 0.0):
            return line[:m.start()] + str(int(m.group()) + 1) + line[m.end():]
    return None
