"""Shell transcripts in the README and the docs, parsed and compared whole.

The convention (stated in the README above its first transcript, and in the docs' index): in a
block fenced ```console, a line starting with "$ " is a command (a trailing backslash continues it
on the next line); every line after it, up to the next command or the end of the block, is what
it prints (stdout and stderr together), blank lines aside. "[exit N]" is its exit status (0 when
absent). A line "..." stands for any number of lines (the epochs of a run that stops early). A
run of spaces matches any run of spaces (columns re-align around wider numbers); the words, the
count of lines and of numbers on each line must be as written, and each number must match its
printed value:

* a whole number (no decimal point or exponent: counts, IDs, exit codes) exactly, as written;
* any other number within 5% of its value or one unit of its last printed digit, whichever is
  larger;
* "nan" only "nan", and a number never "nan" or "inf".

A block may state its own tolerances in an HTML comment right above its fence (invisible on
GitHub and in the built guide), one rule a line::

    <!-- transcript
    "done in # s": free
    "teff (K)", "logg (dex)": 60%  (Table 3 of a two-epoch network)
    "coverage raw # # # -> calibrated # # #": ±0.1
    -->

A rule names where its numbers are, in double quotes, then a colon and the tolerance, and may
end with why, in parentheses. A quoted text with no "#" covers every number after that text on
each line that holds it (whole numbers too: use it for tables of measured values only). A
template with "#" covers only the numbers at its "#"s (a "*" in a template is a number it leaves
to the rules above, e.g. a count); its words are matched as written, and its spaces match any
run of spaces. The tolerances: "free" (any finite number: timings), "exact" (as
written), "N%" (within N% of the value or the last printed digit, whichever is larger) and
"±N" (within N, or the last printed digit). When two rules cover a number the later one counts.
Blocks fenced ```text are shown, not run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

__all__ = ["NUMBER", "ELLIPSIS", "DEFAULT_RELATIVE", "Rule", "Step", "parse_rules", "transcript",
           "tolerance_of", "number_problem", "line_problem", "mismatch", "environment",
           "workspace", "run_steps"]

NUMBER = r"[-+]?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|(?<![a-z])(?:nan|inf)(?![a-z]))"
ELLIPSIS = "..."
#: The tolerance of a number with a decimal point or an exponent, unless a rule says otherwise.
DEFAULT_RELATIVE = 0.05
_WHOLE = re.compile(r"[-+]?\d+")
_UNSIGNED = NUMBER[len("[-+]?"):]


@dataclasses.dataclass(frozen=True)
class Rule:
    """Where a block's tolerance applies (``where``: a text, or a template with # and *) and
    what it is: ("free", 0), ("exact", 0), ("relative", fraction) or ("absolute", amount)."""

    where: str
    kind: str
    amount: float = 0.0

    def covers(self, line: str) -> list[tuple[int, int]]:
        """The (start, end) spans of the numbers of the expected ``line`` that this rule
        covers."""
        spans = [m.span() for m in re.finditer(NUMBER, line, re.IGNORECASE)]
        if "#" not in self.where:
            at = line.find(self.where)
            return [] if at < 0 else [s for s in spans if s[0] >= at + len(self.where)]
        parts = re.split(r"([#*]|\s+)", self.where.strip())
        pattern, marks = "", []
        for part in parts:
            if part in ("#", "*"):
                pattern += f"((?i:{NUMBER}))"
                marks.append(part == "#")
            elif part.isspace():
                pattern += r"\s+"
            else:
                pattern += re.escape(part)
        out = []
        for m in re.finditer(pattern, line):  # the words as written: "yso" is not "YSO"
            for k, covered in enumerate(marks, start=1):
                if covered:
                    out += [s for s in spans if s[0] < m.end(k) and m.start(k) < s[1]]
        return out


_RULE = re.compile(r'\s*((?:"[^"]+"\s*,\s*)*"[^"]+")\s*:\s*(free|exact|(\d+(?:\.\d*)?)%|'
                   r"(?:±|\+-)(\d+(?:\.\d*)?(?:e[-+]?\d+)?))\s*(?:\(.*\))?\s*")


def parse_rules(comment: str, where: str = "") -> list[Rule]:
    """The rules of a ``<!-- transcript ... -->`` comment (its lines after the first); a line
    that is not a rule is a ValueError naming ``where``."""
    rules = []
    for line in comment.splitlines()[1:]:
        line = line.strip().removesuffix("-->").strip()
        if not line:
            continue
        m = _RULE.fullmatch(line)
        if not m:
            raise ValueError(f"{where}: not a transcript rule: {line.strip()!r} (expected "
                             '"text": free|exact|N%|±N)')
        kind = (m.group(2) if m.group(2) in ("free", "exact") else
                "relative" if m.group(3) else "absolute")
        amount = float(m.group(3)) / 100 if m.group(3) else float(m.group(4) or 0)
        rules += [Rule(text, kind, amount) for text in re.findall(r'"([^"]+)"', m.group(1))]
    return rules


@dataclasses.dataclass
class Step:
    command: str
    line: int  # where the command starts in its file
    output: list[str] = dataclasses.field(default_factory=list)  # expected non-empty lines
    exit: int = 0
    rules: list[Rule] = dataclasses.field(default_factory=list)  # its block's tolerances


def transcript(text: str, where: str = "") -> list[Step]:
    """The commands of the ```console blocks, in order, each with the lines it must print and
    its block's rules (the ``<!-- transcript`` comment right above the fence, if any)."""
    steps: list[Step] = []
    fence, block, pending = False, False, ""
    comment, rules = None, []  # an HTML comment being read; the rules of the last one
    for i, line in enumerate(text.splitlines(), start=1):
        if comment is not None or (not fence and line.lstrip().startswith("<!--")):
            comment = (comment or []) + [line]
            if line.rstrip().endswith("-->"):
                rules, comment = _block_rules(comment, f"{where} line {i}"), None
            continue
        if line.startswith("```"):
            fence = not fence
            block = fence and line.strip() == "```console"
            rules = rules if block else []
            continue
        if not block:
            rules = rules if not line.strip() else []  # a comment binds the fence right below
            continue
        if pending or line.startswith("$ "):
            cmd = pending + (line[2:] if not pending else line.strip())
            pending = cmd[:-1].rstrip() + " " if cmd.endswith("\\") else ""
            if not pending:
                steps.append(Step(cmd, i, rules=rules))
            continue
        status = re.fullmatch(r"\[exit (\d+)\]", line.strip())
        if steps and status:
            steps[-1].exit = int(status.group(1))
        elif steps and line.strip():
            steps[-1].output.append(line.rstrip())
    return steps


def _block_rules(comment: list[str], where: str) -> list[Rule]:
    """The rules of a finished HTML comment: none unless it opens with "<!-- transcript"."""
    first = comment[0].strip()
    if not first.startswith("<!-- transcript"):
        return []
    if first.rstrip("->").strip() != "<!-- transcript":
        raise ValueError(f"{where}: a transcript comment opens with '<!-- transcript' alone "
                         f"on its line, got {first!r}")
    return parse_rules("\n".join(comment), where)


def tolerance_of(expected: str, start: int, end: int, rules) -> tuple[str, float]:
    """(kind, amount) for the number at expected[start:end]: the last rule that covers it,
    else "exact" for a whole number and DEFAULT_RELATIVE for any other."""
    kind = ("exact", 0.0) if _WHOLE.fullmatch(expected[start:end]) else ("relative",
                                                                          DEFAULT_RELATIVE)
    for rule in rules:
        if (start, end) in _covers(rule, expected):
            kind = (rule.kind, rule.amount)
    return kind


@functools.lru_cache(maxsize=65536)
def _covers(rule: Rule, expected: str) -> list[tuple[int, int]]:
    return rule.covers(expected)


def _last_digit(text: str) -> float:
    """One unit of the last printed digit of a number: 0.1 for "2.5", 1e-8 for "1.0e-7"."""
    m = re.fullmatch(r"[-+]?\d*(?:\.(\d*))?(?:e([-+]?\d+))?", text, re.IGNORECASE)
    return 10.0 ** (-len(m.group(1) or "") + int(m.group(2) or 0))


def number_problem(expected: str, actual: str, kind: str, amount: float) -> str | None:
    """None when the printed ``actual`` matches ``expected`` under the tolerance; else why."""
    if expected.lower().lstrip("+-") in ("nan", "inf"):
        same = actual.lower() == expected.lower() or (expected.lower() == "nan"
                                                      and actual.lower().lstrip("+-") == "nan")
        return None if same else f"{actual} where {expected} is shown"
    got = float(actual)
    if not math.isfinite(got):
        return f"{actual} where {expected} is shown"
    if kind == "free":
        return None
    if kind == "exact":
        return None if actual.lstrip("+") == expected.lstrip("+") else f"{actual} is not {expected}"
    want = float(expected)
    allowed = max(amount * abs(want) if kind == "relative" else amount, _last_digit(expected))
    if abs(got - want) <= allowed * (1 + 1e-9):
        return None
    stated = f"{amount:.3g}" if kind == "absolute" else f"{100 * amount:g}%"
    return f"{actual} is not {expected} within {stated} or its last digit"


@functools.lru_cache(maxsize=4096)
def _shape(expected: str) -> tuple[re.Pattern, tuple[tuple[int, int], ...]]:
    """A pattern for lines shaped like ``expected`` (its words, one number per number, spaces
    any run of spaces), and the spans of its numbers."""
    expected = expected.strip()
    spans = tuple(m.span() for m in re.finditer(NUMBER, expected, re.IGNORECASE))
    out, at = [], 0
    for start, end in spans:
        for k, part in enumerate(re.split(r"(\s+)", expected[at:start])):
            out.append(r"\s+" if k % 2 else re.escape(part))
        # a number right after another carries its sign ("12.2-42.3"): the split is unambiguous
        out.append(f"([-+]{_UNSIGNED})" if start == at and start > 0 else f"({NUMBER})")
        at = end
    for k, part in enumerate(re.split(r"(\s+)", expected[at:])):
        out.append(r"\s+" if k % 2 else re.escape(part))
    return re.compile("".join(out), re.IGNORECASE), spans


def line_problem(expected: str, actual: str, rules=()) -> str | None:
    """None when the ``actual`` line matches the ``expected`` one (words, spaces, and each
    number within its tolerance); else what differs."""
    pattern, spans = _shape(expected)
    m = pattern.fullmatch(actual.strip())
    if not m:
        return "its words, or how many numbers it holds, differ"
    text = expected.strip()
    for k, (start, end) in enumerate(spans, start=1):
        problem = number_problem(text[start:end], m.group(k),
                                 *tolerance_of(text, start, end, tuple(rules)))
        if problem:
            return problem
    return None


def mismatch(expected: list[str], actual: list[str], rules=()) -> str | None:
    """None when ``actual`` (non-empty output lines) matches ``expected`` line for line under
    the block's ``rules``; else a message naming the first line that differs."""
    actual = [a.rstrip() for a in actual if a.strip()]
    rules = tuple(rules)

    @functools.lru_cache(maxsize=None)
    def match(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if expected[i].strip() == ELLIPSIS:
            return any(match(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and line_problem(expected[i], actual[j], rules) is None \
            and match(i + 1, j + 1)

    if match(0, 0):
        return None
    for k, line in enumerate(expected):  # the first line that cannot be matched in order
        if line.strip() == ELLIPSIS:
            return f"no match after an ellipsis at line {k + 1} of the expected output"
        if k >= len(actual):
            return f"expected line {k + 1} {line!r}, the output ended"
        problem = line_problem(line, actual[k], rules)
        if problem:
            return f"line {k + 1}: expected {line!r}, got {actual[k]!r} ({problem})"
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
        problem = mismatch(step.output, res.stdout.splitlines(), step.rules)
        assert problem is None, f"{problem}\n{context}"
