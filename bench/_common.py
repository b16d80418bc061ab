"""Helpers shared by the benchmark scripts: a cached synthetic survey, timing, and the results
file each script writes (``report``)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time

#: Where every script writes its figures, one JSON file per script (and per variant).
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
#: The checkout the scripts live in: its apnet_tf is imported where no other is on the path.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.append(ROOT)  # last: a PYTHONPATH (time_to_accuracy's baseline) comes first

CACHE = os.environ.get("APNET_BENCH_CACHE", os.path.join(os.path.dirname(__file__), "..",
                                                         ".bench"))


def survey_records(n: int, seed: int = 0, photometry: bool = False) -> tuple[str, str]:
    """(spectra_dir, records_dir) of an n-star synthetic survey, made once and cached. With
    ``photometry`` the records are made with ``make-records --photometry`` from the survey's
    photometry.csv (a survey cached before synth wrote one is written again: the same spectra
    and labels, plus photometry.csv)."""
    from apnet_tf.data.records import make_records
    from apnet_tf.data.synth import make_survey
    from apnet_tf.data.synth_photometry import PHOTOMETRY_FILE

    spectra = os.path.join(CACHE, f"survey{n}_s{seed}")
    records = os.path.join(CACHE, f"records{n}_s{seed}" + ("_phot" if photometry else ""))
    wanted = ["labels.csv"] + ([PHOTOMETRY_FILE] if photometry else [])
    if not all(os.path.exists(os.path.join(spectra, name)) for name in wanted):
        make_survey(spectra, n, seed)
    if not os.path.exists(os.path.join(records, "manifest.json")):
        make_records([spectra], records, labels=os.path.join(spectra, "labels.csv"),
                     photometry=os.path.join(spectra, PHOTOMETRY_FILE) if photometry else None)
    return spectra, records


def timed(fn, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def rate(fn, n_per_call: int, seconds: float, calls: int = 2) -> float:
    """Items per second of fn() over at least ``seconds`` and ``calls`` calls (after warm-up)."""
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or done < calls:
        fn()
        done += 1
    return done * n_per_call / (time.perf_counter() - t0)


def best_rates(runners: dict, rounds: int, seconds: float, timer=rate,
               warm_up: bool = True) -> dict:
    """{name: best rate} of ``runners`` ({name: (fn, items per call)}) over ``rounds`` rounds in
    which the runners take turns, so that a slow moment of a shared machine hits them all alike;
    ``seconds`` per runner over all rounds, each turn timed by ``timer(fn, items, seconds)``.
    ``warm_up``: each fn is called once first (tracing, first allocations)."""
    if warm_up:
        for fn, _ in runners.values():
            fn()
    best = dict.fromkeys(runners, 0.0)
    for _ in range(rounds):
        for name, (fn, n) in runners.items():
            best[name] = max(best[name], timer(fn, n, seconds / rounds))
    return best


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def commit() -> str:
    """``git rev-parse HEAD`` of this checkout, with ``+dirty`` when files differ from it."""
    root = os.path.dirname(RESULTS)

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout

    head = git("rev-parse", "HEAD").strip() or "unknown"
    # pathspecs from the top of the checkout (git runs in bench/results' parent); the results
    # files themselves do not make the code dirty
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)apnet_tf",
                ":(top)bench", ":(top,exclude)bench/results").strip()
    return head + ("+dirty" if dirty else "")


def add_tag(parser) -> None:
    """``--tag NAME``: the results file becomes ``<script>-NAME.json`` (a variant's own)."""
    parser.add_argument("--tag", default="", help="suffix of the results file's name")


def parse_overrides(recipe, items: list[str]) -> dict:
    """``field=value`` strings -> {field: value} typed as the field of ``recipe`` (a Recipe)."""
    overrides = {}
    for item in items:
        key, value = item.split("=", 1)
        kind = type(getattr(recipe, key))
        overrides[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    return overrides


def report(name: str, figures: dict, tag: str = "", recipe=None) -> str:
    """Print ``figures`` as JSON and write them to ``bench/results/<name>[-<tag>].json`` with the
    commit, the machine, the date, the command that made them and this commit's default recipe
    (``recipe_defaults``); ``recipe`` (a Recipe or its fields) is the recipe that trained the
    network the figures measure, where one did. Returns the file's path."""
    from _recipe import current_defaults

    name = f"{name}-{tag}" if tag else name
    record = {"script": os.path.basename(sys.argv[0]), "command": " ".join(sys.argv),
              "commit": commit(), "machine": machine(),
              "load_average_1min_at_end": round(os.getloadavg()[0], 2),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "recipe_defaults": current_defaults(), "figures": figures}
    if recipe is not None:
        record["recipe"] = recipe if isinstance(recipe, dict) else dataclasses.asdict(recipe)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=2, default=float)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(json.dumps(figures, indent=2, default=float))
    print(f"wrote {os.path.relpath(path)}")
    return path


def run_recipe(run_dir: str) -> dict | None:
    """The recipe a run folder's network trained with (its ``run.json``), for ``report``'s
    ``recipe``; None when the folder does not record one."""
    try:
        with open(os.path.join(run_dir, "run.json")) as f:
            return json.load(f).get("recipe")
    except (OSError, ValueError):
        return None


#: The record splits, in the order Table 3 has them.
SPLITS = ("train", "dev", "test")
#: Table 3's groups by the categories they hold, with the Payne stars on their own as well.
GROUPS = {"Full": ("payne", "mstar", "yso"), "Payne": ("payne",), "MStar": ("mstar",),
          "YSO": ("yso",)}

#: Table 3's groups are named as the categories (all, mstar, yso); results files written before
#: that, and the reference commits that time_to_accuracy.py runs, use the paper's names.
FORMER_GROUP_NAMES = {"all": "Full", "mstar": "MStar", "yso": "YSO"}


def table3_cell(table3: dict, group: str, target: str, default=KeyError):
    """A results file's Table 3 entry "<group> <target>" under today's or the former name;
    ``default`` when it has neither (KeyError: raise)."""
    for key in (f"{group} {target}", f"{FORMER_GROUP_NAMES[group]} {target}"):
        if key in table3:
            return table3[key]
    if default is KeyError:
        raise KeyError(f"{group} {target}")
    return default


def table3_split(table3, split: str) -> dict:
    """One split of ``fit``'s Table 3 (a DataFrame indexed by (group, target), columns "<split>"
    and "<split> bias") as {"group target": scatter, "group target bias": bias}, 4 decimals."""
    out = {}
    for (group, target), row in table3.iterrows():
        out[f"{group} {target}"] = round(float(row[split]), 4)
        out[f"{group} {target} bias"] = round(float(row[f"{split} bias"]), 4)
    return out


def scatter_ratio(ref: dict, new: dict) -> dict:
    """new / ref of each scatter of two ``table3_split`` results (a bias, or a zero or NaN
    scatter on either side, has no ratio)."""
    return {k: round(new[k] / ref[k], 3) for k in ref
            if not k.endswith(" bias") and ref[k] and ref[k] == ref[k] and new[k] == new[k]}


def group_key(key: str) -> str:
    """"Full teff (K)" of an older results file as today's "all teff (K)"."""
    group, _, target = key.partition(" ")
    former = {v: k for k, v in FORMER_GROUP_NAMES.items()}
    return f"{former.get(group, group)} {target}"
