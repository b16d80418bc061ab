"""Which training recipe a results file measured, against today's default recipe.

Every results file records ``recipe_defaults``, the default recipe of the code that ran
(``_common.report``), and, where its figures come from a network trained with a recipe (trained
in the run, or a run folder it loaded), ``recipe``, the fields that network trained with. A page
may call a figure the default recipe's only while that recipe is today's default
(``training.recipes.RECIPES["default"]``); ``bench/benchmarks_md.py`` words each section from
this, and the tests hold the guide to it.

Results files written before the record existed get it from the git history
(``python bench/_recipe.py --backfill NAME[=COMMIT] ...``): the Recipe defaults of
``apnet_tf/training/recipes.py`` at the commit that trained the network, read from the source
without running it, with ``recipe_source`` saying so.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import subprocess
import sys

__all__ = ["current_defaults", "differences", "describe", "defaults_at", "backfill"]

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")


def current_defaults() -> dict:
    """Today's default recipe, field by field."""
    if REPO not in sys.path:
        sys.path.append(REPO)
    from apnet_tf.training.recipes import RECIPES

    return dataclasses.asdict(RECIPES["default"])


def differences(recorded: dict, current: dict) -> dict:
    """{field: (recorded, today)} for each field whose value differs. A field the record lacks
    (added to the recipe later) counts as the same where today's value is off (0 or False):
    a field that a later commit added switched off changes nothing that ran."""
    out = {}
    for key, now in current.items():
        if key not in recorded:
            if now:
                out[key] = (None, now)
        elif recorded[key] != now:
            out[key] = (recorded[key], now)
    return out


def describe(diff: dict) -> str:
    """``batch_size 16, precision float32; today's default: batch_size 32, precision auto``."""
    then = ", ".join(f"{k} {'not recorded' if old is None else old}"
                     for k, (old, _) in diff.items())
    return f"{then}; today's default: " + ", ".join(f"{k} {new}" for k, (_, new) in diff.items())


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _constants(source: str) -> dict:
    """The module-level names of constants.py that plain expressions define."""
    names: dict = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            try:
                names[node.targets[0].id] = eval(compile(ast.Expression(node.value), "c", "eval"),
                                                 {"__builtins__": {}}, dict(names))
            except Exception:  # a name built by code, which no recipe default uses
                continue
    return names


def defaults_at(commit: str) -> dict:
    """The Recipe dataclass's field defaults in ``apnet_tf/training/recipes.py`` at ``commit``
    (its default recipe is ``Recipe()``), read from the source with the constants of the same
    commit, without importing either."""
    names = _constants(_git("show", f"{commit}:apnet_tf/constants.py"))
    tree = ast.parse(_git("show", f"{commit}:apnet_tf/training/recipes.py"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Recipe")
    fields = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            fields[node.target.id] = eval(compile(ast.Expression(node.value), "r", "eval"),
                                          {"__builtins__": {}}, dict(names))
    return fields


def backfill(name: str, trained_at: str | None = None) -> str:
    """Add ``recipe_defaults`` (at the file's commit) and ``recipe`` (the defaults at
    ``trained_at``, the commit that trained its network; None: the figures come from no trained
    network) to ``bench/results/<name>.json``, which lacks them; returns what it wrote."""
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path) as f:
        rec = json.load(f)
    if "recipe_defaults" in rec:
        return f"{name}: already recorded"
    commit = rec["commit"].split("+")[0]
    rec["recipe_defaults"] = defaults_at(commit)
    how = f"backfilled by bench/_recipe.py: the Recipe defaults of commit {commit[:10]}"
    ran = rec["figures"].get("current", {}).get("recipe") if isinstance(
        rec["figures"].get("current"), dict) else None
    if ran is not None:
        rec["recipe"] = ran
        how += "; recipe: the one its figures record (figures.current.recipe)"
    elif trained_at:
        overrides = rec["figures"].get("recipe_overrides") or {}
        rec["recipe"] = {**defaults_at(trained_at), **overrides}
        how += (f"; recipe: the Recipe defaults of commit {trained_at[:10]}, which trained the "
                "network" + (f", with its overrides {overrides}" if overrides else ""))
    rec["recipe_source"] = how
    with open(path + ".tmp", "w") as f:
        json.dump(rec, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
    return f"{name}: {how}"


def main() -> None:
    ap = argparse.ArgumentParser(description="backfill the recipe record of old results files")
    ap.add_argument("--backfill", nargs="+", metavar="NAME[=COMMIT]", required=True,
                    help="results name; =COMMIT: the commit whose default recipe trained its "
                         "network (=self: the file's own commit)")
    args = ap.parse_args()
    for item in args.backfill:
        name, _, trained = item.partition("=")
        if trained == "self":
            with open(os.path.join(RESULTS, f"{name}.json")) as f:
                trained = json.load(f)["commit"].split("+")[0]
        print(backfill(name, trained or None))


if __name__ == "__main__":
    main()
