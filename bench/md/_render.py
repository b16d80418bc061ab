"""What every section of BENCHMARKS.md uses: a results file read (``load``, ``tagged``), one
figure as the guide prints it (``figure``, the ``{bench}`` role of docs/_ext/bench_figures.py),
a table, a figure's format, a target's verdict computed from the figure, the source line under
each table, and the words for the recipe a section's figures were trained with (they look
``current_defaults`` up in this module, where tests replace it)."""

from __future__ import annotations

import json
import operator
import os

from _common import group_key
from _recipe import current_defaults, describe, differences

__all__ = ["RESULTS", "TARGETS", "load", "figure", "tagged", "source", "missing", "target",
           "is_default", "default_name", "recipe_words", "besides", "table", "fmt"]

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")
TARGETS = ("teff (K)", "logg (dex)", "fe_h (dex)")
_OPS = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


def load(name: str) -> dict | None:
    path = os.path.join(RESULTS, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def figure(ref: str) -> str:
    """One figure of a results file as the guide prints it (the ``{bench}`` role of
    ``docs/_ext/bench_figures.py``): ``NAME:PATH[;SPEC]``, PATH the keys under ``figures``
    joined by ``/`` (a list index is a number). A list prints as its smallest-largest range.
    SPEC: empty (``fmt``), a format spec (``.2f``, ``,.0f``), ``MiB`` or ``MB`` (of bytes),
    ``1-`` (one minus the value, as a percentage: ``0.905`` -> ``9.5``).

    Raises:
        KeyError: no such results file or key.
    """
    name, _, rest = ref.partition(":")
    path, _, spec = rest.partition(";")
    rec = load(name.strip())
    if rec is None:
        raise KeyError(f"no bench/results/{name.strip()}.json")
    value = rec["figures"]
    for key in path.strip().split("/"):
        if isinstance(value, dict) and key not in value:  # "Full ..." of older results files
            key = next((k for k in value if group_key(k) == group_key(key)), key)
        value = value[int(key)] if isinstance(value, list) else value[key]
    if isinstance(value, list):
        low, high = min(value), max(value)
        return (_shown(low, spec.strip()) if low == high else
                f"{_shown(low, spec.strip())}-{_shown(high, spec.strip())}")
    return _shown(value, spec.strip())


def _shown(value, spec: str) -> str:
    if isinstance(value, str) or isinstance(value, bool):
        return str(value)
    if spec == "MiB":
        return f"{value / 2 ** 20:.1f}"
    if spec == "MB":
        return f"{value / 1e6:.1f}"
    if spec == "1-":
        return f"{100 * (1 - value):.0f}"
    return format(value, spec) if spec else fmt(value)


def tagged(name: str) -> list[str]:
    """The results names of ``<name>.py --tag TAG`` runs (``<name>-TAG``), sorted."""
    return sorted(p[:-5] for p in os.listdir(RESULTS)
                  if p.startswith(f"{name}-") and p.endswith(".json"))


def source(rec: dict, name: str) -> str:
    """The line under each table: the results file, its command, commit, date and load."""
    return (f"Source: `bench/results/{name}.json` (`python {rec['command']}`, commit "
            f"`{rec['commit'][:10]}`, {rec['date'][:16].replace('T', ' ')} UTC, {rec['machine']}, "
            f"load average {rec.get('load_average_1min_at_end', 'n/a')} at the end).")


def missing(name: str, command: str) -> str:
    return (f"Not measured in this round: `python {command}` writes "
            f"`bench/results/{name}.json`.\n")


def target(value: float, op: str, bound: float, shown: str = "", unit: str = "") -> str:
    """``target >= 10x: met`` or ``...: NOT met``: the target and whether ``value`` meets it,
    computed here from the figure, never typed."""
    ok = _OPS[op](value, bound)
    return f"target {op} {shown or fmt(bound)}{unit}: {'met' if ok else 'NOT met'}"


def is_default(rec: dict) -> bool:
    """Whether a results file's figures were trained with today's default recipe."""
    ran = rec.get("recipe")
    return ran is not None and not differences(ran, current_defaults())


def default_name(rec: dict) -> str:
    """"default recipe" for figures of today's default recipe, else "then-default recipe"."""
    return "default recipe" if is_default(rec) else "then-default recipe"


def recipe_words(rec: dict) -> str:
    """The recipe a section's figures were trained with, in words: "today's default recipe"
    only while the recorded recipe is today's default (``bench/_recipe.py``)."""
    ran = rec.get("recipe")
    if ran is None:
        return "a recipe the results file does not record"
    diff = differences(ran, current_defaults())
    if not diff:
        return "today's default recipe"
    return f"an older recipe ({describe(diff)})"


def besides(rec: dict, overridden) -> str:
    """For a variant's row: ``; otherwise an older recipe (...)`` where its recipe differs from
    today's default in more than the fields it overrides, else nothing."""
    diff = {k: v for k, v in differences(rec.get("recipe") or {}, current_defaults()).items()
            if k not in overridden}
    return f"; otherwise an older recipe ({describe(diff)})" if diff else ""


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt(v, digits: int = 3) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, float)):
        return f"{v:,.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _epochs(run: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in run["epochs"].items()) + f"; {run['rounds']} rounds"
