"""Write BENCHMARKS.md from the results files in bench/results/ (one per script).

Every figure in BENCHMARKS.md comes from a results file that a script in bench/ wrote, with the
commit, the machine, the date and the command; this script only lays them out, so the page
cannot drift from what was measured (tests/test_benchmarks.py checks that it is up to date).

    python bench/benchmarks_md.py          # rewrite BENCHMARKS.md
    python bench/benchmarks_md.py --check  # exit 1 if BENCHMARKS.md differs
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _common import group_key, table3_cell  # noqa: E402
from _recipe import current_defaults, describe, differences  # noqa: E402

RESULTS = os.path.join(HERE, "results")
PAGE = os.path.join(HERE, "..", "BENCHMARKS.md")
TARGETS = ("teff (K)", "logg (dex)", "fe_h (dex)")
#: The calibration's cost is "flat" as the survey grows tenfold when it grows by at most this.
FLAT = 1.2
#: Every cell of a calibrated coverage table (category or S/N tercile x parameter) within this.
COVERAGE_BAND = (0.60, 0.76)
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


def records_section() -> str:
    out = "## Records (`bench/records.py`)\n\n"
    rec = load("records")
    if rec is None:
        return out + missing("records", "bench/records.py --n 2000")
    f = rec["figures"]
    batch, precision = f.get("train_batch", 128), f.get("train_precision", "float32")
    out += ("`make-records` on synthetic apStar files, then the `tf.data` read of the records "
            "(parse + batch 128, shuffled, three passes) against the rate at which a Keras "
            f"training step consumes spectra (batch {batch}, {precision}; {recipe_words(rec)}), "
            "measured in the same run: reading must stay at least 10x ahead, so input never "
            "limits training.\n\n")
    out += table(["figure", "value"], [
        [f"`make-records`, {f['n_files']:,} files",
         f"{fmt(f['make_records_files_per_s'])} files/s"],
        ["`make_dataset` read", f"{fmt(f['read_spectra_per_s'])} spectra/s"],
        [f"Keras training step, batch {batch}, {precision} (reference)",
         f"{fmt(f['keras_train_spectra_per_s'])} spectra/s"],
        ["**read / train**",
         f"**{f['read_over_train']}x** ({target(f['read_over_train'], '>=', 10, unit='x')})"]])
    return out + "\n" + source(rec, "records") + "\n"


def train_section() -> str:
    out = "## Training throughput (`bench/train.py`)\n\n"
    rec = load("train")
    if rec is None:
        return out + missing("train", "bench/train.py")
    f = rec["figures"]
    if "keras_default_spectra_per_s" in f:  # the default recipe as fit trains, beside batch 128
        default = (f"{default_name(rec)} as `fit` trains (batch {f['default_batch']}, "
                   f"{f['default_precision']})", "keras_default")
        rows = [("Keras, float32, batch 128", "keras_float32"),
                ("Keras, `--precision mixed_bfloat16`, batch 128", "keras_mixed_bfloat16")]
    else:  # a file written before: its default ran in float32 at batch 128
        default = (f"{default_name(rec)} (float32, batch 128)", "keras_default_float32")
        rows = [("Keras, `fit --precision mixed_bfloat16`, batch 128", "keras_mixed_bfloat16")]
    out += ("The Keras model as `fit` builds it against the paper's PyTorch network (Appendix B, "
            "`apnet_tf/model/torch_reference.py`), on the same in-memory spectra with Adam, after "
            "warm-up; the runners alternate three times and each keeps its best rate. The bold "
            f"row trains with {recipe_words(rec)}.\n\n")
    table_rows = [["PyTorch, Appendix B, float32, batch 128 (reference)",
                   fmt(f["torch_spectra_per_s"]), "1"]]
    for label, key in [default, *rows]:
        if f"{key}_spectra_per_s" in f:
            ratio = f[f"ratio_{key}_over_torch"]
            bold = key == default[1]
            table_rows.append([f"**Keras, {label}**" if bold else label,
                               fmt(f[f"{key}_spectra_per_s"]),
                               f"**{ratio}x** ({target(ratio, '>=', 3.5, unit='x')})" if bold
                               else f"{ratio}x"])
    out += table(["run", "spectra/s", "/ PyTorch"], table_rows)
    return out + "\n" + source(rec, "train") + "\n"


def determinism_section() -> str:
    out = "## The cost of `fit --deterministic` (`bench/determinism.py`)\n\n"
    rec = load("determinism")
    if rec is None:
        return out + missing("determinism", "bench/determinism.py --n 300 --epochs 3 --repeat 2")
    f = rec["figures"]
    out += (f"`fit --stage pretrain` on a {f['stars']}-star survey for {f['epochs']} epochs, "
            f"with {recipe_words(rec)}, each mode in a process of its own (op determinism is "
            "process-wide), alternating; the first epoch (tracing) is not counted.\n\n")
    out += table(["mode", "mean epoch (s)"], [
        ["plain (reference)", f["epoch_s_plain"]],
        ["`--deterministic`", f["epoch_s_deterministic"]],
        ["**deterministic / plain**", f"**{f['ratio']}**"]])
    return out + "\n" + source(rec, "determinism") + "\n"


def accuracy_section() -> str:
    out = "## Does it learn? (`bench/accuracy.py`)\n\n"
    rec = load("accuracy")
    if rec is None:
        return out + missing("accuracy", "bench/accuracy.py")
    f = rec["figures"]
    out += (f"A {f['n_stars']:,}-star synthetic survey (`synth --seed 0`), `fit` (pretraining "
            f"and the rolling Payne fine-tuning) with {recipe_words(rec)}, against a ridge "
            "regression on log flux fitted on the same train split (alpha chosen on dev). Test "
            "split, all stars, scatter = standard deviation of prediction - label.\n\n")
    s = f["test_scatter"]
    rows = [["ridge regression on log flux (reference)"] + [fmt(s[t]["ridge"], 4) for t in TARGETS],
            ["`fit`, plain predictions (`fit`'s Table 3)"]
            + [fmt(s[t]["network"], 4) for t in TARGETS],
            ["**ridge / network**"] + [f"**{s[t]['ridge_over_network']}x**" for t in TARGETS],
            ["`fit`, catalog values (mean of 100 Monte Carlo draws)"]
            + [fmt(s[t]["network_catalog_mc100"], 4) for t in TARGETS],
            ["ridge / catalog"] + [f"{s[t]['ridge_over_catalog']}x" for t in TARGETS]]
    out += table(["", "Teff (K)", "log g (dex)", "[Fe/H] (dex)"], rows)
    run, worst = f["network_run"], min(s[t]["ridge_over_network"] for t in TARGETS)
    epochs = ", ".join(f"{k} {v}" for k, v in run["epochs"].items())
    out += (f"\nridge / network in each parameter ({target(worst, '>=', 3, unit='x')}, the "
            f"smallest {worst}x). The `fit` took {fmt(run['seconds'])} s (epochs: {epochs}; "
            f"{run['rounds']} fine-tuning rounds).\n\n")
    out += source(rec, "accuracy") + "\n"
    return out + accuracy_variants()


def accuracy_variants() -> str:
    """The same command with recipe overrides (``--set ... --tag NAME``), one row each."""
    names = tagged("accuracy")
    if not names:
        return ""
    rows = []
    for name in names:
        rec = load(name)
        f, s = rec["figures"], rec["figures"]["test_scatter"]
        rows.append([f"`python {rec['command']}`{besides(rec, f['recipe_overrides'])}"]
                    + [f"{fmt(s[t]['network'], 4)} ({s[t]['ridge_over_network']}x)"
                       for t in TARGETS]
                    + [f"{fmt(f['network_run']['seconds'])} s", f"`bench/results/{name}.json`"])
    return ("\nThe same with other recipe fields (plain predictions, test split; ridge / network "
            "in brackets); without `--deterministic` no two runs are bit-identical:\n\n"
            + table(["command", "Teff (K)", "log g (dex)", "[Fe/H] (dex)", "fit time",
                     "source"], rows))

STAGE_NAMES = ("pretrain", "finetune", "tables", "calibration", "total")


def _tta_row(label: str, run: dict) -> list:
    secs = run["seconds"]
    return [label] + [fmt(secs.get(k), 3) for k in STAGE_NAMES] + [_epochs(run)]


def time_to_accuracy_variants(current: dict) -> str:
    """How the training defaults were chosen: ``time_to_accuracy.py`` variants (``--set ...
    --tag NAME``), one row each, under the defaults' row of the main run (``current``: its
    figures' run, with the results file's ``commit``)."""
    names = tagged("time_to_accuracy")
    if not names:
        return ""
    rows = [[f"**defaults of `{current['commit'][:7]}`** (the run above)"]
            + [fmt(table3_cell(current["table3_test"], "all", t), 4) for t in TARGETS]
            + [fmt(current["seconds"][k], 3) for k in ("pretrain", "finetune", "total")]
            + [_epochs(current), "", ""]]
    for name in names:
        rec = load(name)
        run = rec["figures"]["current"]
        over = rec["figures"]["overrides"]
        rows.append(["`" + " ".join(over) + "`"
                     + besides(rec, {o.split("=", 1)[0] for o in over})]
                    + [fmt(table3_cell(run["table3_test"], "all", t), 4) for t in TARGETS]
                    + [fmt(run["seconds"][k], 3) for k in ("pretrain", "finetune", "total")]
                    + [_epochs(run), fmt(rec.get("load_average_1min_at_end")),
                       f"`bench/results/{name}.json`"])
    return ("\n**How the training defaults were chosen**: the same survey, `fit` with one choice "
            "of the defaults undone (`python bench/time_to_accuracy.py --skip-baseline "
            "--skip-references --set FIELD=VALUE --tag NAME`); test split, all stars, and wall "
            "time in seconds. One run each: one recipe's Table 3 varies from run to run on this "
            "survey by more than 5% (see above).\n\n"
            + table(["recipe", "Teff (K)", "log g (dex)", "[Fe/H] (dex)", "pretrain", "fine-tune",
                     "`fit` total", "epochs", "load", "source"], rows))


def _epochs(run: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in run["epochs"].items()) + f"; {run['rounds']} rounds"


def time_to_accuracy_section() -> str:
    out = "## Time to a trained, calibrated model (`bench/time_to_accuracy.py`)\n\n"
    rec = load("time_to_accuracy")
    if rec is None:
        return out + missing("time_to_accuracy", "bench/time_to_accuracy.py")
    f, j = rec["figures"], rec["figures"]["judged"]
    cur, base, refs = f["current"], f["baseline"], f["references"]
    here = f"defaults of `{rec['commit'][:7]}`"
    out += (f"`fit` (`apnet_tf.workflows.fit`, what `apnet-tf fit` runs) on a fresh "
            f"{f['n_stars']:,}-star synthetic survey (seed {f['survey_seed']}, used by no test), "
            f"with the {here}, the measured commit ({recipe_words(rec)}), and with the defaults "
            "of an earlier commit, each in a process of its own, one after the other in the same "
            "run; seconds of wall time per stage.\n\n")
    rows = [_tta_row(f"defaults of `{base['commit']}` (reference)", base)] if base else []
    rows.append(_tta_row(f"**{here}**", cur))
    out += table(["`fit`", *STAGE_NAMES, "epochs"], rows)
    out += ("\nThe same test split (all stars, scatter = standard deviation of prediction - "
            "label), and two references fitted on the same train split in the same run, their "
            "wall time including reading the spectra:\n\n")
    rows = []
    if base:
        rows.append([f"`fit`, defaults of `{base['commit']}`"]
                    + [fmt(table3_cell(base["table3_test"], "all", t), 4) for t in TARGETS]
                    + [fmt(base["seconds"]["total"])])
    rows.append([f"**`fit`, {here}**"]
                + [fmt(table3_cell(cur["table3_test"], "all", t), 4) for t in TARGETS]
                + [fmt(cur["seconds"]["total"])])
    for key, label in (("cannon", "The Cannon (`bench/_cannon.py`)"),
                       ("ridge", "ridge regression on log flux")):
        rows.append([label] + [fmt(v, 4) for v in refs[key]["test_scatter"]]
                    + [fmt(refs[key]["seconds"])])
    out += table(["", "Teff (K)", "log g (dex)", "[Fe/H] (dex)", "wall time (s)"], rows)
    lines = [f"calibration / `fit`: **{j['calibration_share']}** "
             f"({target(j['calibration_share'], '<=', 0.10, '0.10')})",
             f"`fit` / The Cannon: **{j['fit_over_cannon']}x** "
             f"({target(j['fit_over_cannon'], '<=', 5, unit='x')})"]
    if base:
        lines += [f"`fit` / reference `fit`: **{j['fit_over_baseline']}** "
                  f"({target(j['fit_over_baseline'], '<=', 1 / 3, '1/3')})",
                  "Table 3 / reference Table 3 (Teff, log g, [Fe/H]): **"
                  + " / ".join(str(r) for r in j["table3_over_baseline"]) + "** ("
                  + target(max(j["table3_over_baseline"]), "<=", 1.05, "1.05 each") + ")"]
    out += "\n" + "".join(f"* {line}\n" for line in lines)
    return (out + "\n" + source(rec, "time_to_accuracy") + "\n"
            + time_to_accuracy_variants({**cur, "commit": rec["commit"]}))


LABELS = ("Teff", "log g", "[Fe/H]")


def _ratio_cells(stats: dict) -> list[str]:
    """scatter / bound and bias / bound per target, as 'scatter (ratio)' cells."""
    return [f"{fmt(stats['scatter'][k], 3)} / {fmt(stats['bound_rms'][k], 2)} = "
            f"**{stats['scatter_over_bound'][k]:.2f}**; bias {stats['bias_over_bound'][k]:+.2f}"
            for k in range(3)]


def information_section() -> str:
    out = ("## How much of the information in the spectra the network uses "
           "(`bench/information.py`)\n\n")
    rec = load("information")
    if rec is None:
        return out + missing("information", "bench/information.py --fit") + information_variants()
    f = rec["figures"]
    b = f["bound"]
    out += (f"The Cramér-Rao bound of each star of the synthetic survey `{f['survey']}` from the "
            "generator's own forward model: numerical derivatives of the noiseless spectrum in "
            + ", ".join(b["params"]) + " (the last two, extinction and flux scale, "
            "marginalised), the per-pixel errors the survey wrote, the good pixels only "
            f"({b['stars_step_checked']} stars checked with halved steps: largest change of the "
            f"bound {b['step_check_max_rel_change']:.1e}). Table 3 of the run `{f['run']}` "
            f"(trained with {recipe_words(rec)}; plain predictions) beside the bound's RMS over "
            "the same stars: scatter / bound "
            "(1 is the best an unbiased method can do) and bias / bound. "
            + _fit_line(f.get("fit")) + "\n\n")
    test = f["groups"]["test"]
    rows = [[g, test[g]["stars"][0]] + _ratio_cells(test[g]) for g in test]
    out += "**Test split**, scatter / bound RMS = ratio; bias / bound RMS:\n\n"
    out += table(["group", "stars", *LABELS], rows)
    terc = f["terciles"]["test"]["Full"]
    rows = [[name, s["stars"][0]] + _ratio_cells(s) for name, s in terc.items()]
    out += "\n**Test split, Full group, by S/N tercile**:\n\n"
    out += table(["S/N", "stars", *LABELS], rows)
    j = f["teff_bias_over_scatter"]
    worst = max(v for k, v in j.items() if k != "all <= 0.3")
    cells = []
    for key, v in j.items():
        if key == "all <= 0.3":
            continue
        group, split = key.split()
        stars = f["groups"][split][group]["stars"][0]
        cells.append(f"{key} {v} (± {1 / math.sqrt(stars):.2f}, {stars} stars)")
    out += ("\n|Teff bias| / Teff scatter of the M dwarfs and YSOs in every split (largest "
            f"{worst}; {target(worst, '<=', 0.3)}): " + ", ".join(cells) + ". The ± is the "
            "standard error of a mean over that many stars in units of their scatter (1/√N): "
            "with a few tens of stars per group, a ratio of 0.3 is within two standard errors "
            "of none at all, so one survey of this size cannot show a bias that small; the "
            f"{FULL_SURVEY:,}-star survey's groups are three times larger.\n\n")
    out += source(rec, "information") + "\n"
    if f["stars"] < FULL_SURVEY:
        out += (f"\nThe {FULL_SURVEY:,}-star benchmark survey is not measured in this round: "
                f"`nice -n 10 python bench/information.py --n {FULL_SURVEY} --fit` (a default "
                "`fit`, then the bound of every star) writes it; `bench/cool_bias.py --n "
                f"{FULL_SURVEY} --seeds 0 1 2` the three fits' spread.\n")
    return out + information_variants()


#: The size of the package's benchmark survey (seed 23), on which the issue's targets are set.
FULL_SURVEY = 6000


def _fit_line(fit: dict | None) -> str:
    if not fit:
        return "The run was trained before (`--run`)."
    return ("The run was fitted by the script with the defaults"
            + (f" and `{' '.join(fit['overrides'])}`" if fit["overrides"] else "")
            + f": {fmt(fit['seconds'])} s, {_epochs(fit)}.")


def information_variants() -> str:
    """``bench/information.py --tag NAME`` runs (other recipes, or other fits of the defaults):
    test-split scatter / bound per group, one row each."""
    names = tagged("information")
    if not names:
        return ""
    rows = []
    for name in names:
        rec = load(name)
        f = rec["figures"]
        test = f["groups"]["test"]
        rows.append([f"`python {rec['command']}`"]
                    + [" / ".join(f"{v:.2f}" for v in test[g]["scatter_over_bound"])
                       for g in ("Full", "MStar", "YSO")]
                    + [" / ".join(f"{test[g]['bias'][0]:+.0f}" for g in ("MStar", "YSO")),
                       _last_layer(rec), fmt(f["fit"]["seconds"]) if f.get("fit") else "before",
                       fmt(rec.get("load_average_1min_at_end")), f"`bench/results/{name}.json`"])
    return ("\nOther runs (test split, scatter / bound RMS for Teff / log g / [Fe/H]; the M "
            "dwarfs' and YSOs' Teff bias in K; the last layer as trained or fitted again "
            "(`refit_last_layer`); `fit` wall time, or `before` for a run trained before, whose "
            "time `bench/cool_bias.py` records):\n\n"
            + table(["command", "Full", "MStar", "YSO", "Teff bias MStar / YSO", "last layer",
                     "fit (s)", "load", "source"], rows))


def _last_layer(rec: dict) -> str:
    return "fitted again" if (rec.get("recipe") or {}).get("refit_last_layer") else "as trained"


def cool_bias_section() -> str:
    out = "## Why a fit can leave the M dwarfs and YSOs offset (`bench/cool_bias.py`)\n\n"
    names = [n for n in (["cool_bias"] if load("cool_bias") else []) + tagged("cool_bias")
             if not n.endswith("posthoc")]
    if not names:
        return out + missing("cool_bias", "bench/cool_bias.py --n 6000")
    out += ("Several `fit`s of one survey, each with its recipe seed, one after the other, each "
            "taken apart: the Teff bias (prediction - label, K) of each group and split as "
            "Table 3 has it; the same bias on the training split when the network is run as it "
            "was trained (`dropout`: the mean of 10 passes with dropout on; `noise`: the mean "
            "over 10 draws of the training's noise augmentation; `train mode`: both); and, over "
            "the fine-tuning epochs, how far the training split's Teff bias wanders (standard "
            "deviation over the epochs) against what early stopping can see: the median change "
            "of the dev loss from one epoch to the next, beside the change that a 35 K offset "
            "of every dev M dwarf and YSO would make.\n\n")
    for name in names:
        if not _refitted(load(name)):
            out += _cool_bias_runs(name)
    return out


def _refitted(rec: dict) -> bool:
    return any(fit.get("last_layer") for fit in rec["figures"]["fits"])


def refit_section() -> str:
    """``bench/cool_bias.py`` runs whose fits ended with the last layer fitted again, the refit
    post hoc on networks trained without it, and whether it earns a place in the default recipe
    (a section of its own: its runs trained with another recipe than the default)."""
    out = ("## The last layer fitted again (`bench/cool_bias.py`)\n\n"
           "The same measurements as the section above, on fits that end with the last layer "
           "fitted again in inference mode, each category weighted alike "
           "(`apnet_tf.training.last_layer`), and the refit applied afterwards to the networks "
           "of that section.\n\n")
    names = [n for n in tagged("cool_bias") if not n.endswith("posthoc")]
    runs = [n for n in names if _refitted(load(n))]
    posthoc = [n for n in tagged("cool_bias") if n.endswith("posthoc")]
    if not runs and not posthoc:
        return out + missing("cool_bias-refit", "bench/cool_bias.py --n 2000 --seeds 0 1 2 --set "
                             "refit_last_layer=true --tag refit")
    for name in runs:
        out += _cool_bias_runs(name)
    for name in posthoc:
        out += _cool_bias_posthoc(name)
    return out


def _cool_bias_runs(name: str) -> str:
    rec = load(name)
    f = rec["figures"]
    rows, seen, cond = [], [], []
    for fit in f["fits"]:
        g, t = fit["groups"], fit["trace_summary"]
        refit = fit.get("last_layer")
        rows.append([fit["recipe_seed"], fmt(fit["seconds"]),
                     f"{refit['seconds']:.3g}" if refit and "seconds" in refit else "off",
                     f"{fit['load_before']} / {fit['load_after']}", _epochs_only(fit)]
                    + [" / ".join(f"{g[s][grp]['bias'][0]:+.0f}" for s in ("train", "dev",
                                                                           "test"))
                       for grp in ("Payne", "MStar", "YSO")])
        change = t["median_epoch_to_epoch_dev_loss_change"]
        offset = t["dev_loss_change_of_35K_rare_offset"]
        seen.append([fit["recipe_seed"]] + [fmt(t[f"teff_bias_sd_{c}"])
                                            for c in ("payne", "mstar", "yso")]
                    + [f"{change:.2g}", f"{offset:.2g}", f"**{change / offset:.1f}x**"])
        c = fit["conditions"]
        cond.append([fit["recipe_seed"]]
                    + [" / ".join(f"{c[m]['train'][grp]['bias'][0]:+.0f}"
                                  for m in ("plain", "dropout", "noise", "train_mode"))
                       for grp in ("Payne", "MStar", "YSO")])
    refit = any(fit.get("last_layer") for fit in f["fits"])
    out = (f"**`{name}`: {f['n_stars']:,}-star survey (seed {f['survey_seed']}), "
           f"{recipe_words(rec)}"
           + (f" with `{' '.join(f['overrides'])}`" if f["overrides"] else "")
           + (", the last layer fitted again" if refit else ", the last layer as trained")
           + "**: Teff bias train / dev / test (K)\n\n")
    out += table(["seed", "fit (s)", "of which last layer (s)", "load before / after",
                  "epochs", "Payne", "MStar", "YSO"], rows)
    out += ("\nTraining split, Teff bias (K) plain / dropout / noise / train mode:\n\n"
            + table(["seed", "Payne", "MStar", "YSO"], cond))
    out += ("\nOver the fine-tuning epochs: standard deviation of the training split's Teff "
            "bias (K), and the dev loss:\n\n"
            + table(["seed", "Payne", "MStar", "YSO", "median epoch-to-epoch change",
                     "change from a 35 K offset", "ratio"], seen))
    return out + "\n" + source(rec, name) + "\n\n"


def _epochs_only(fit: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in fit["epochs"].items())


def _cool_bias_posthoc(name: str) -> str:
    rec = load(name)
    f = rec["figures"]
    runs = name[len("cool_bias-"):-len("posthoc")].rstrip("-") or "untagged"
    out = ("**The last layer fitted again** (`apnet_tf.training.last_layer`, the end of `fit "
           f"--refit-last-layer`) on the very networks of `cool_bias-{runs}` above, made without "
           "it: Table 3's scatter per group before -> after, and the Teff bias (K); below, the "
           "penalty dev chose per label (none: the trained layer kept).\n\n")
    rows = []
    for fit in f["posthoc"]:
        for split in ("train", "dev", "test"):
            for grp in ("Full", "Payne", "MStar", "YSO"):
                b, a = fit["before"][split][grp], fit["after"][split][grp]
                rows.append([fit["recipe_seed"], split, grp]
                            + [f"{fmt(b['scatter'][k], 3)} -> {fmt(a['scatter'][k], 3)}"
                               for k in range(3)]
                            + [f"{b['bias'][0]:+.0f} -> {a['bias'][0]:+.0f}"])
    out += table(["seed", "split", "group", *LABELS, "Teff bias"], rows)
    pens = "; ".join(f"seed {fit['recipe_seed']}: " + ", ".join(
        "none" if p is None else f"{p:g}" for p in fit["refit"]["penalty"]) + f" "
        f"({fit['refit_seconds']} s)" for fit in f["posthoc"])
    return out + f"\nPenalties (Teff, log g, [Fe/H]) and refit time: {pens}.\n\n" + \
        source(rec, name) + "\n\n" + refit_verdict(rec)


GROUPS4 = ("Full", "Payne", "MStar", "YSO")
#: The refit may add at most this factor to `fit`'s wall time.
REFIT_TIME = 1.5


def refit_verdict(posthoc: dict) -> str:
    """Whether the last-layer refit belongs in the default recipe: on the same networks (post
    hoc), the test split's scatter, hence scatter / bound, of every group, label and network no
    larger after than before and smaller in at least one label; across fits with and without it,
    the mean test scatter / bound per group; and the refit's share of `fit`'s time."""
    worse, better, cells = [], 0, 0
    for fit in posthoc["figures"]["posthoc"]:
        for grp in GROUPS4:
            b, a = fit["before"]["test"][grp]["scatter"], fit["after"]["test"][grp]["scatter"]
            cells += 3
            better += sum(a[k] < b[k] for k in range(3))
            worse += [f"seed {fit['recipe_seed']} {grp} {LABELS[k]} {fmt(b[k], 3)} -> "
                      f"{fmt(a[k], 3)}" for k in range(3) if a[k] > b[k]]
    out = ("**Does the refit bring Table 3 closer to the bound?** On the same networks, test "
           f"split, group x label x network: {better} of {cells} closer, "
           f"{cells - better - len(worse)} unchanged (the trained layer kept), {len(worse)} "
           "farther" + (f" ({'; '.join(worse)})" if worse else "") + "; closer in every group: "
           + ("**met**" if not worse else "**NOT met**") + ".\n\n")
    means = _mean_ratios()
    if means:
        out += ("Across fits, the mean test scatter / bound RMS (Teff / log g / [Fe/H]) as "
                "trained -> fitted again: " + "; ".join(
                    f"{grp} " + " / ".join(f"{o:.2f} -> {n:.2f}" for o, n in
                                           zip(means[False][grp], means[True][grp]))
                    for grp in GROUPS4) + f" (over {means['counts']}).\n\n")
        gain = min(1 - means[True][g][k] / means[False][g][k] for g in GROUPS4 for k in range(3))
        out += (f"Smallest gain of the mean scatter / bound over the groups and labels: "
                f"**{100 * gain:+.0f}%** ({target(100 * gain, '>=', 25, unit='%')}).\n\n")
    times = [fit["seconds"] / (fit["seconds"] - fit["last_layer"]["seconds"])
             for name in tagged("cool_bias") if not name.endswith("posthoc")
             for fit in load(name)["figures"]["fits"] if fit.get("last_layer")]
    if times:
        out += (f"`fit` with the refit / without it (the refit's own seconds taken out of the "
                f"same fits): at most **{max(times):.3f}x** "
                f"({target(max(times), '<=', REFIT_TIME, unit='x')}).\n\n")
    return out


def _mean_ratios() -> dict | None:
    """{refit: {group: [mean test scatter / bound per label]}} over the information.py runs of
    the same survey, with and without the refit; None without both."""
    runs = {False: [], True: []}
    main = load("information")
    for name in (["information"] if main else []) + tagged("information"):
        rec = load(name)
        if main and rec["figures"]["survey"] != main["figures"]["survey"]:
            continue
        runs[bool((rec.get("recipe") or {}).get("refit_last_layer"))].append(rec)
    if not (runs[False] and runs[True]):
        return None
    out = {refit: {grp: [sum(r["figures"]["groups"]["test"][grp]["scatter_over_bound"][k]
                             for r in recs) / len(recs) for k in range(3)] for grp in GROUPS4}
           for refit, recs in runs.items()}
    out["counts"] = (f"{len(runs[False])} fits as trained and {len(runs[True])} fitted "
                     "again")
    return out


def photometry_section() -> str:
    out = "## Does photometry help? (`bench/photometry.py`)\n\n"
    rec = load("photometry")
    if rec is None:
        return out + missing("photometry", "bench/photometry.py") + photometry_variants()
    f = rec["figures"]
    runs, ratio = f["runs"], f["scatter_ratio_anet2_over_apnet"]
    out += (f"A {f['n_stars']:,}-star synthetic survey (`synth --seed {f['survey_seed']}`, "
            "with the Gaia EDR3 and 2MASS photometry and parallax synth draws for each star; "
            "records made with `make-records --photometry`), `fit` twice, with "
            f"{recipe_words(rec)}, on the same records: the spectrum-only network "
            "(`--arch apnet`, the reference) and "
            "APOGEE Net II's two-input layout (`--arch anet2`). Table 3 on the test split: "
            "scatter = standard deviation of prediction - label; ratio below 1: photometry "
            "helps.\n\n")
    rows = []
    for key in ratio:
        rows.append([group_key(key), fmt(runs["apnet"]["table3_test"][key], 4),
                     fmt(runs["anet2"]["table3_test"][key], 4), f"**{ratio[key]}**"])
    out += table(["group, label", "apnet (reference)", "anet2", "anet2 / apnet"], rows)
    def effort(r: dict) -> str:
        e = r["epochs"]
        return (f"{fmt(r['seconds'])} s: {e.get('pretrain', 0)} pretraining epochs, "
                f"{e.get('finetune', 0)} fine-tuning epochs in {r['rounds']} rounds")

    out += (f"\n`fit` time (training, tables, calibration): apnet {effort(runs['apnet'])}; "
            f"anet2 {effort(runs['anet2'])}; anet2 / apnet "
            f"{f['fit_seconds_ratio_anet2_over_apnet']}. Missing photometry in "
            f"the records, by band: "
            + ", ".join(f"{k} {v}" for k, v in f["photometry"]["missing"].items())
            + f" of {f['photometry']['records']:,} records.\n\n")
    return out + source(rec, "photometry") + "\n" + photometry_variants()


def photometry_variants() -> str:
    """``bench/photometry.py --tag NAME`` runs, one row each: the all stars's ratios."""
    names = tagged("photometry")
    rows = []
    for name in names:
        rec = load(name)
        ratio = rec["figures"]["scatter_ratio_anet2_over_apnet"]
        rows.append([f"`python {rec['command']}`"]
                    + [table3_cell(ratio, "all", t, "n/a") for t in TARGETS]
                    + [f"`bench/results/{name}.json`"])
    if not rows:
        return ""
    return ("\nThe same with other settings (all stars, test split, anet2 / apnet scatter):\n\n"
            + table(["command", "Teff (K)", "log g (dex)", "[Fe/H] (dex)", "source"], rows))


def fit_anet3_section() -> str:
    out = "## APOGEE Net III trained here (`bench/fit_anet3.py`)\n\n"
    rec = load("fit_anet3")
    if rec is None:
        return out + missing("fit_anet3", "bench/fit_anet3.py")
    f = rec["figures"]
    runs, ratio = f["runs"], f["scatter_ratio_anet3_over_apnet"]
    test = sum((f.get("split_stars") or {}).get("test", {}).values())
    out += (f"A {f['n_stars']:,}-star synthetic survey (`synth --seed {f['survey_seed']}`; "
            f"{test} test stars), `fit` twice, with {recipe_words(rec)}, on the same records: "
            f"the Appendix B network (`--arch apnet`, {runs['apnet']['parameters']:,} "
            "weights, the reference) and APOGEE Net III's layout (`--arch anet3`, "
            f"{runs['anet3']['parameters']:,} weights, BatchNorm's running statistics "
            "included; no dropout, its own log scaling). "
            "Pretraining and the rolling Payne fine-tuning, then Table 3 on the test split "
            "(scatter = standard deviation of prediction - label); ratio below 1: Net III's "
            "layout is the closer. The sigma calibration is not run (it does not change "
            "Table 3).")
    if f["n_stars"] < 3000:
        out += (f" **A small run** ({f['n_stars']} stars, a proof that the script and the "
                "network run, not a measure of either network's accuracy); the full-size run "
                "is `python bench/fit_anet3.py --n 3000`.")
    rows = [[key, fmt(runs["apnet"]["table3"]["test"][key], 4),
             fmt(runs["anet3"]["table3"]["test"][key], 4), f"**{ratio[key]}**"]
            for key in ratio]
    out += "\n\n" + table(["group, label", "apnet (reference)", "anet3", "anet3 / apnet"], rows)

    def effort(r: dict) -> str:
        e = r["epochs"]
        return (f"{fmt(r['seconds'])} s: {e.get('pretrain', 0)} pretraining epochs, "
                f"{e.get('finetune', 0)} fine-tuning epochs in {r['rounds']} rounds")

    out += (f"\nTraining and tables: apnet {effort(runs['apnet'])}; anet3 "
            f"{effort(runs['anet3'])}; anet3 / apnet {f['seconds_ratio_anet3_over_apnet']}.\n\n")
    return out + source(rec, "fit_anet3") + "\n"


def infer_section() -> str:
    out = "## Inference (`bench/infer.py`)\n\n"
    rec = load("infer")
    if rec is None:
        return out + missing("infer", "bench/infer.py --seconds 10")
    f = rec["figures"]
    out += ("An untrained network of the package's layout (float32) in one process: plain "
            "inference at batch 256 against the paper's "
            "PyTorch network (Appendix B, eval mode, `no_grad`, batch 256); the Monte Carlo "
            "(mc = 100, 32 stars per call, run in chunks of at most `MC_ROWS_PER_CHUNK` rows so "
            "that memory stays bounded) against plain inference on a batch 100 times as large, "
            "and against the same Monte Carlo in one chunk.\n\n")
    out += table(["figure", "value", "reference (same run)", "ratio"], [
        ["plain inference, batch 256", f"{fmt(f['plain_spectra_per_s_batch256'])} spectra/s",
         f"PyTorch: {fmt(f['torch_spectra_per_s_batch256'])} spectra/s",
         f"**{f['plain_over_torch']}x** ({target(f['plain_over_torch'], '>=', 4, unit='x')})"],
        ["Monte Carlo, mc = 100, chunked (the package)",
         f"{fmt(f['mc_r100_stars_per_s'])} stars/s = {fmt(f['mc_r100_rows_per_s'])} rows/s",
         f"plain, batch 3,200: {fmt(f['plain_spectra_per_s_batch3200'])} spectra/s",
         f"**{f['mc_rows_over_plain_batch3200']}** "
         f"({target(f['mc_rows_over_plain_batch3200'], '>=', 0.85)})"],
        ["the same Monte Carlo in one 3,200-row chunk",
         f"{fmt(f['mc_r100_stars_per_s_one_3200_row_chunk'])} stars/s", "the chunked one",
         f"chunked / one chunk: {f['chunked_over_one_chunk']}"]])
    if "mc_rows_over_plain_batch3200_per_cpu_second" in f:
        out += ("\nPer CPU second of the process (the work itself, which other jobs on the "
                "machine move less than the wall clock), Monte Carlo rows / plain spectra: "
                f"**{f['mc_rows_over_plain_batch3200_per_cpu_second']}**.\n")
    return out + "\n" + source(rec, "infer") + "\n"


def precision_section() -> str:
    out = "## Inference precision (`bench/precision.py`)\n\n"
    rec = load("precision")
    if rec is None:
        return out + missing("precision", "bench/precision.py")
    f = rec["figures"]
    out += (f"`infer --precision`: the `bench/accuracy.py` run (`{f['run']}`, trained with "
            f"{recipe_words(rec)}) in float32 (the "
            "reference) and through its bfloat16 twin (same weights; convolutions and fc1, fc2 "
            "in bfloat16, outputs float32), in one process, alternating. Throughput on the "
            f"synthetic test split ({f['test_stars']} stars); bfloat16 computed in hardware on "
            f"this machine: {f['bfloat16_native']}.\n\n")
    t = f["throughput"]
    out += table(["figure", "float32 (reference)", "mixed_bfloat16", "bfloat16 / float32"], [
        ["plain, batch 256", f"{fmt(t['float32']['plain_spectra_per_s'])} spectra/s",
         f"{fmt(t['mixed_bfloat16']['plain_spectra_per_s'])} spectra/s",
         f"**{t['plain_spectra_per_s_bf16_over_f32']}x**"],
        ["Monte Carlo, mc = 100, 32 stars per call",
         f"{fmt(t['float32']['mc_r100_stars_per_s'])} stars/s",
         f"{fmt(t['mixed_bfloat16']['mc_r100_stars_per_s'])} stars/s",
         f"**{t['mc_r100_stars_per_s_bf16_over_f32']}x**"]])
    out += ("\nThe accuracy cost: |bfloat16 - float32| of the plain predictions per label, in "
            "percent of the label's spread (the run's normalization.json std: "
            + ", ".join(f"{k} {fmt(v, 4)}" for k, v in f["spread"].items())
            + "); `auto` keeps bfloat16 only where every median is at most 0.1% and every "
            "maximum at most 1%.\n\n")
    rows = []
    for key, label in (("shift_test_split", "synthetic test split"),
                       ("shift_real_dr13", "real DR13 apStar files")):
        s = f[key]
        for stat, name in (("median", "median"), ("max", "maximum")):
            rows.append([f"{label} ({s['stars']} stars), {name}"]
                        + [f"{s[f'{stat}_pct_of_spread'][k]}% ({fmt(s[f'{stat}_abs'][k], 3)})"
                           for k in ("teff", "logg", "fe_h")])
    sc = f["test_scatter"]
    for key in ("float32", "mixed_bfloat16"):
        rows.append([f"test-split scatter against the labels, {key}"]
                    + [fmt(sc[key][k], 4) for k in ("teff", "logg", "fe_h")])
    out += table(["|shift|, % of spread (in the label's units)", "Teff (K)", "log g (dex)",
                  "[Fe/H] (dex)"], rows)
    out += ("\nWhat `--precision auto` decides on this machine, from the job's first 256 "
            "spectra:\n\n")
    where = {"test_split": "synthetic test split", "real_dr13": "real DR13 apStar files"}
    out += "".join(f"- {where.get(k, k)}: `{line}`\n" for k, line in f["auto"].items())
    return out + "\n" + source(rec, "precision") + "\n"


def precision_bossnet_section() -> str:
    out = ("## Inference precision of APOGEE Net III and BOSS Net "
           "(`bench/precision_bossnet.py`)\n\n")
    rec = load("precision_bossnet")
    if rec is None:
        return out + missing("precision_bossnet", "bench/precision_bossnet.py")
    f = rec["figures"]
    out += ("`infer --precision` for the two networks: the stand-in weights of "
            "`bench/published_bossnet.py` (seeded, the authors' layout, imported with "
            "`import-torch`) in float32 (the reference) and through their bfloat16 twins (same "
            "weights; convolutions and Linear layers in bfloat16, the log scaling, the last "
            "Linear and the labels in float32), in one process, alternating. APOGEE Net III on "
            "the real apStar files of the test data, BOSS Net on a synthetic BOSS survey "
            "(`synth --instrument boss`). bfloat16 computed in hardware on this machine: "
            f"{f['bfloat16_native']}. The shift is |bfloat16 - float32| per label in percent "
            "of the label's spread (the network's de-standardising std, linearised for Teff), "
            "with the label's units in brackets; `auto` keeps bfloat16 only where every "
            "median is at most 0.1% and every maximum at most 1%. Seeded weights, not the "
            "authors' trained ones: the shift of the real weights may differ, and `auto` "
            "measures it on each job's first 256 spectra.\n\n")
    rows = []
    for arch in ("anet3", "bossnet"):
        a = f.get(arch)
        if a is None:
            continue
        s = a["shift"]
        labels = list(s["median_pct_of_spread"])
        shift = "; ".join(f"{k} {s['median_pct_of_spread'][k]}% ({fmt(s['median_abs'][k], 3)})"
                          f" / {s['max_pct_of_spread'][k]}% ({fmt(s['max_abs'][k], 3)})"
                          for k in labels)
        rows.append([f"{arch} ({a['files']} files)",
                     f"{fmt(a['bfloat16_spectra_per_s'])} spectra/s",
                     f"{fmt(a['float32_spectra_per_s'])} spectra/s",
                     f"**{a['bfloat16_over_float32']}x**", shift, f"`{a['auto']}`"])
    out += table(["network", "plain, mixed_bfloat16", "plain, float32 (reference)",
                  "bfloat16 / float32", "shift, median / maximum, % of spread (units)",
                  "what `--precision auto` chose"], rows)
    per_call = next(a["stars_per_call"] for k, a in f.items() if isinstance(a, dict))
    out += f"\nPlain predictions, {per_call} spectra per call.\n"
    return out + "\n" + source(rec, "precision_bossnet") + "\n"


def survey_section() -> str:
    out = "## Survey-scale inference (`bench/survey.py`)\n\n"
    rec = load("survey")
    if rec is None:
        return out + missing("survey", "bench/survey.py --n 3000 --mc-n 32 --rss 3000 30000 "
                                       "--ray")
    f = rec["figures"]
    out += ("An untrained network of the real architecture on synthetic stars; each way of "
            "running a job as a ratio to the model alone on arrays (batch 256), or, for the "
            "Monte Carlo rows, to the Monte Carlo alone, in the same run.\n\n")
    reads = f.get("real_dr13_files_per_s") or {}
    rows = []
    if reads:
        rows.append(["`read_apstar`, 24 real DR13 files, one core",
                     f"{fmt(reads['read_apstar'])} files/s",
                     f"astropy full read: {fmt(reads['astropy_full_read'])} files/s",
                     f"{reads['read_apstar'] / reads['astropy_full_read']:.1f}x"])
    rates = f["spectra_per_s"]
    names = {"records": "`infer` on the record folder, `--mc 0`",
             "fits_serial": "`infer` on FITS, read in the main process",
             "fits_parallel": "`infer` on FITS, 2 reader processes"}
    for key, label in names.items():
        if key in rates:
            rows.append([label, f"{fmt(rates[key])} spectra/s",
                         f"model alone: {fmt(rates['model'])} spectra/s",
                         fmt(f["ratio_to_model"][key])])
    for key, label in (("fits_mc100", "`infer` on FITS, `--mc 100`"),):
        if key in rates:
            rows.append([label, f"{fmt(rates[key])} stars/s",
                         f"Monte Carlo alone: {fmt(rates['mc_alone'])} stars/s",
                         fmt(f["ratio_to_mc_alone"][key])])
    out += table(["figure", "value", "reference (same run)", "ratio"], rows)
    if f.get("rss"):
        out += "\nPeak resident memory of `apnet-tf infer --mc 0` as the survey grows:\n\n"
        out += table(["files", "main process", "one reader process", "wall time"],
                     [[fmt(r.get("files")), f"{r['main_mib']:,.0f} MiB",
                       f"{r['reader_mib']:,.0f} MiB", f"{r['seconds']:.0f} s"]
                      for r in f["rss"]])
    if f.get("cpu_ms_per_file"):
        c = f["cpu_ms_per_file"]
        out += (f"\nCPU time per file, in one process (batches of 256): reading "
                f"{c['read']:.2f} ms, the model alone {c['model']:.2f} ms, the model with the "
                f"flags and catalog columns (`unit_part`) {c['unit_part']:.2f} ms.\n")
    if f.get("ray"):
        out += ray_table(f["ray"])
    return out + "\n" + source(rec, "survey") + "\n"


def ray_table(r: dict) -> str:
    """survey.py --ray: the two engines on the same files, whole jobs, in the same run."""
    links = r["files"] - r["distinct_files"]
    out = (f"\n`--engine ray` on a local Ray instance (2 CPUs) against the local engine, each a "
           f"whole job from the model's path to the catalog (model loading, reader processes or "
           f"actors, every batch) on the same {r['files']:,} files: {r['distinct_files']:,} "
           f"distinct synthetic apStar files and {links:,} symbolic links to them under other "
           "names (the page cache holds them all, for both engines alike). Ray's own start-up "
           "(once per cluster, not per job) is measured on its own, and so is a job of one "
           "batch, the fixed cost of every job:\n\n")
    rows = [[f"`--engine ray`, `--mc 0`, {r['files']:,} files",
             f"{fmt(r['ray_files_per_s'])} files/s",
             f"local engine: {fmt(r['local_files_per_s'])} files/s",
             f"**{r['ray_over_local']:.2f}** ({target(r['ray_over_local'], '>=', 0.8)})"],
            ["`--engine ray`, `--mc 100`, 256 stars", f"{fmt(r['ray_mc100_stars_per_s'])} stars/s",
             f"local engine: {fmt(r['local_mc100_stars_per_s'])} stars/s",
             f"{r['ray_mc100_over_local']:.2f}"],
            ["a job of one batch (256 files), `--mc 0`", f"{r['ray_one_batch_job_s']:.1f} s",
             f"local engine: {r['local_one_batch_job_s']:.1f} s", ""],
            ["Ray's start-up (`ray.init`, local instance)", f"{r['ray_init_s']:.1f} s", "", ""]]
    return out + table(["figure", "value", "reference (same run)", "ratio"], rows)


def _duration(hours: float) -> str:
    if hours >= 1:
        return f"{hours:,.1f} h"
    return f"{hours * 60:,.1f} min" if hours >= 1 / 60 else f"{hours * 3600:,.0f} s"


def projection_section() -> str:
    out = "## DR17 in hours (`bench/projection.py`)\n\n"
    rec = load("projection")
    if rec is None:
        return out + missing("projection", "bench/projection.py")
    f = rec["figures"]
    out += (f"The projected time for DR17's {f['dr17_files']:,} apStar files, from the figures "
            f"of `bench/results/survey.json` (commit `{f['survey_commit'][:10]}`, "
            f"{f['survey_date'][:10]}). A measured row is the rate measured on this machine "
            "applied to DR17's count; an estimate says its arithmetic. No GPU was at hand: "
            "every GPU figure is an estimate.\n\n")
    out += table(["where", "job", "files/s", "DR17", "basis", "how"],
                 [[r["where"], r["mode"], fmt(r["files_per_s"]), _duration(r["hours"]),
                   r["basis"], r["how"]] for r in f["rows"]])
    if f.get("dr19"):
        out += dr19_table(f["dr19"])
    return out + "\n" + source(rec, "projection") + "\n"


def dr19_table(d: dict) -> str:
    """projection.py's APOGEE Net III and BOSS Net rows: each against its reference where one
    was measured in the same run."""
    src = "; ".join(f"`{k}.json` commit `{v['commit'][:10]}`, {v['date'][:16].replace('T', ' ')}"
                    f" UTC, load {v['load_average_1min_at_end']}"
                    for k, v in d["sources"].items())
    out = (f"\nAPOGEE Net III (`anet3`) and BOSS Net (`bossnet`) at DR19's scale: "
           f"{d['spectra']:,} spectra per network, a round number of DR19's order (astra "
           "analysed DR17's 733,901 APOGEE files and SDSS-V's APOGEE and BOSS spectra besides; "
           "the count is `--dr19-spectra`, and the hours scale with it). Measured rows are "
           f"rates measured on this machine ({src}), each beside its reference measured in "
           "the same run; the GPU rows are estimates, with their arithmetic.\n\n")
    rows = []
    for r in d["rows"]:
        ref = ("" if r["reference"] is None else
               f"{r['reference']}: {fmt(r['reference_spectra_per_s'])} spectra/s, "
               f"{_duration(r['reference_hours'])}")
        ratio = "" if r["ratio"] is None else f"**{r['ratio']:.2f}x**"
        rows.append([r["arch"], r["where"], r["mode"], fmt(r["spectra_per_s"]),
                     _duration(r["hours"]), ref, ratio, r["basis"], r["how"]])
    return out + table(["network", "where", "job", "spectra/s", f"{d['spectra']:,} spectra",
                        "reference (same run)", "ratio", "basis", "how"], rows)


def published_section() -> str:
    out = "## APOGEE Net II against the authors' PyTorch (`bench/published.py`)\n\n"
    rec = load("published")
    if rec is None:
        return out + missing("published", "bench/published.py")
    f = rec["figures"]
    out += ("Seeded random weights in Net II's state_dict layout, saved as a .pt file and "
            "imported with `import-torch --arch anet2`; the run loaded as `infer` loads it. On "
            "the same in-memory spectra and raw photometry: plain inference at batch "
            f"{f['batch']} (`KerasRuntime.predict`) against the authors' forward pass at the same "
            "batch (`eval()`, `no_grad`, their `nan_to_num` of the flux, photometry fill values "
            "and z-scores, de-standardisation and 10**log Teff, as their code does per star); "
            f"the Monte Carlo with mc = {f['mc']} (the package's, anet2 style, "
            f"{f['mc_stars_per_call']} stars per call) against their `pipeline.py` loop, one "
            "star at a time: a deterministic pass, mc noised copies through the network, median "
            "and std. The runners alternate and each keeps its best rate; PyTorch uses "
            f"{f['torch_threads']} threads. Both give the same plain numbers (largest "
            f"difference {f['max_abs_diff_over_std_plain']:.1e} of a label's spread).\n\n")
    out += table(["figure", "value", "reference (same run)", "ratio"], [
        ["plain inference", f"{fmt(f['plain_spectra_per_s'])} spectra/s",
         f"PyTorch: {fmt(f['torch_plain_spectra_per_s'])} spectra/s",
         f"**{f['plain_over_torch']}x** ({target(f['plain_over_torch'], '>=', 4, unit='x')})"],
        [f"Monte Carlo, mc = {f['mc']}", f"{fmt(f['mc_stars_per_s'])} stars/s",
         f"PyTorch pipeline: {fmt(f['torch_mc_stars_per_s'])} stars/s",
         f"**{f['mc_over_torch']}x**"]])
    return out + "\n" + source(rec, "published") + "\n"


def published_bossnet_section() -> str:
    out = ("## APOGEE Net III and BOSS Net against PyTorch (`bench/published_bossnet.py`)\n\n")
    rec = load("published_bossnet")
    if rec is None:
        return out + missing("published_bossnet", "bench/published_bossnet.py")
    f = rec["figures"]
    out += ("The goldens' stand-in weights (seeded, 72.6 M parameters, the authors' state_dict "
            "layout) written as the authors' chunk folder and imported with `import-torch "
            "--arch anet3|bossnet`; the run loaded as `infer` loads it. PyTorch side: "
            "`tests/bossnet_reference.py`, an independent implementation of the authors' "
            "`BossNet` class that loads their state_dict strictly and that the test suite "
            "checks against the authors' own code's outputs; their log scaling inside the "
            "timing, `eval()`, `no_grad`, float32, "
            f"{f['torch_threads']} threads. Plain: one call on the same spectra (the real "
            "apStar files of the test data, or the synthetic BOSS files); Monte Carlo: astra's "
            "20 draws per star, log-scaled over the stack, against their loop one star at a "
            "time. Target (plain): >= 2x PyTorch.\n\n")
    rows = []
    for arch in ("anet3", "bossnet"):
        a = f.get(arch)
        if a is None:
            continue
        met = "met" if a["plain_over_torch"] >= 2 else "**NOT met**"
        rows.append([arch, f"{fmt(a['plain_spectra_per_s'])} spectra/s "
                     f"({a['stars_per_call']} per call)",
                     f"{fmt(a['torch_plain_spectra_per_s'])} spectra/s",
                     f"**{a['plain_over_torch']}x** (target >= 2x: {met})",
                     f"{fmt(a['mc_stars_per_s'])} vs {fmt(a['torch_mc_stars_per_s'])} stars/s: "
                     f"**{a['mc_over_torch']}x**",
                     f"{a['max_abs_diff_over_spread_plain']:.1e}"])
    out += table(["network", "plain, this package", "plain, PyTorch", "ratio",
                  "Monte Carlo (astra's mc = 20), ratio",
                  "largest plain difference / label spread"], rows)
    bad = f.get("anet3", {}).get("bad_pixels")
    if bad:
        out += ("\nBad pixels in APOGEE Net III's Monte Carlo (astra's conventions, mc = 20, "
                f"the first {bad['stars']} real apStar files; medians over the stars): with "
                "every pixel noised (the authors' Monte Carlo) and with the file's bad pixels "
                "kept at their fill value (`infer --mc-bad-pixels fill`).\n\n")
        out += table(["bad pixels", "Teff(median of draws) - Teff(un-noised), absolute",
                      "Teff sigma"], [
            ["noised (default)", f"{fmt(bad['teff_shift_k_noise'])} K",
             f"{fmt(bad['teff_sigma_k_noise'])} K"],
            ["kept at fill (`--mc-bad-pixels fill`)", f"{fmt(bad['teff_shift_k_fill'])} K",
             f"{fmt(bad['teff_sigma_k_fill'])} K"]])
    return out + "\n" + source(rec, "published_bossnet") + "\n"


def memory_bossnet_section() -> str:
    out = "## Memory of APOGEE Net III's Monte Carlo (`bench/memory_bossnet.py`)\n\n"
    rec = load("memory_bossnet")
    if rec is None:
        return out + missing("memory_bossnet", "bench/memory_bossnet.py")
    f = rec["figures"]
    out += ("Peak resident memory of the whole `infer` process, run as a user runs it, on "
            f"{f['stars']} apStar files (the {f['real_files']} real ones of the test data "
            "copied in turn), APOGEE Net III imported from the stand-in weights in the authors' "
            f"chunk layout (72.6 M parameters; memory does not depend on their values), float32, "
            f"astra's Monte Carlo with mc = {f['mc']}; the catalog has {f['catalog_rows_mc']} "
            "rows.\n\n")
    gb = f["infer_mc_gb"]
    rows = [[f"`infer --model <anet3 run> --mc {f['mc']}`, {f['stars']} stars",
             f"**{gb} GB** ({target(gb, '<', f['target_gb'], fmt(f['target_gb']), ' GB')})",
             f"{f['infer_mc_s']:.0f} s",
             f"`--mc 0`: {f['infer_plain_gb']} GB, {f['infer_plain_s']:.0f} s "
             f"({f['mc_over_plain']}x the memory)"]]
    variants = [(name, load(name)) for name in tagged("memory_bossnet")]
    for name, v in variants:
        g = v["figures"]
        rows.append([f"the same, the Monte Carlo at {g['rows_per_chunk']} rows (stars x draws) "
                     "per network call, not the package's (`BOSSNET_MC_ROWS_PER_CHUNK` set in the "
                     "process: a variant)", f"{g['infer_mc_gb']} GB", f"{g['infer_mc_s']:.0f} s",
                     f"`--mc 0`: {g['infer_plain_gb']} GB, {g['infer_plain_s']:.0f} s; "
                     f"the package's chunk: {gb} GB, {f['infer_mc_s']:.0f} s "
                     f"({g['infer_mc_gb'] / gb:.2f}x the memory)"])
    out += table(["command", "peak RSS", "wall time", "reference (same run)"], rows)
    out += "\n" + source(rec, "memory_bossnet") + "\n"
    return out + "".join(source(v, name) + "\n" for name, v in variants)


def memory_section() -> str:
    out = "## Memory (`bench/memory.py`)\n\n"
    rec = load("memory")
    if rec is None:
        return out + missing("memory", "bench/memory.py")
    f = rec["figures"]
    out += (f"Peak resident memory of each command in its own process, as a user runs it, on a "
            f"{f['survey_stars']:,}-star synthetic survey (an untrained network; memory does not "
            "depend on the weights), mc = 100.\n\n")
    out += table(["command", "peak RSS", "reference (same run)"], [
        [f"`infer --model <SavedModel> --mc 100`, {f['stars_infer']} stars",
         f"**{f['infer_saved_model_mc100_gb']} GB** "
         f"({target(f['infer_saved_model_mc100_gb'], '<', 3, unit=' GB')})",
         f"`--mc 0`: {f['infer_saved_model_plain_gb']} GB ({f['mc100_over_plain']}x)"],
        ["`calibrate --mc 100` (train + dev)", f"**{f['calibrate_mc100_gb']} GB** "
         f"({target(f['calibrate_mc100_gb'], '<', 3, unit=' GB')})", ""],
        ["`evaluate --mc 100`", f"**{f['evaluate_mc100_gb']} GB** "
         f"({target(f['evaluate_mc100_gb'], '<', 3, unit=' GB')})", ""]])
    out += "\n"
    return out + source(rec, "memory") + "\n"


def _coverage_rows(judged: dict) -> list[list]:
    rows = []
    for name, j in judged.items():
        cov = j["coverage"]
        cells = [" ".join(f"{v:.2f}" for v in cov[g][:3]) + f" ({cov[g][3]})" for g in cov]
        rows.append([name] + cells + [str(j["all_cells_in_0.60-0.76"]),
                                      j["worst_abs_dev_from_0.683"]])
    return rows


def cells_in_band(coverage: dict) -> str:
    """Whether every cell (group x parameter) of a coverage table is within 0.60-0.76, worded as
    a target line: the fraction of cells inside, and met / NOT met."""
    cells = [v for row in coverage.values() for v in row[:3]]
    inside = sum(COVERAGE_BAND[0] <= v <= COVERAGE_BAND[1] for v in cells)
    band = f"{COVERAGE_BAND[0]:.2f}-{COVERAGE_BAND[1]:.2f}"
    return (f"{inside} of {len(cells)} cells in {band} (target: every cell in {band}: "
            f"{'met' if inside == len(cells) else 'NOT met'})")


def calibration_section() -> str:
    out = "## Uncertainty calibration (`bench/calibration.py`)\n\n"
    rec = load("calibration")
    if rec is None:
        return out + missing("calibration",
                             "bench/calibration.py --indep 3000 --subsets --infer --calibrate")
    f = rec["figures"]
    out += ("Which calibration holds for every kind of star? The raw Monte Carlo (mc = 100) "
            f"of the `bench/accuracy.py` run (trained with {recipe_words(rec)}) once over "
            "train, dev and test; each candidate "
            "fitted on dev (the package's shape on train, level on dev), then judged on the test "
            "split and, with `--indep`, on every star of a second survey the network never saw. "
            "1-sigma coverage, Teff log g [Fe/H] (ideally 0.683; `package` is judged below each "
            "table against every cell in 0.60-0.76), stars in brackets.")
    if "package" in f:
        p = f["package"]
        out += (f" `package` is the fit `calibrate` runs: on its subset (at most "
                f"{p['stars_per_stratum']} training stars per Kiel region x S/N tercile, dev "
                f"stars in proportion; {p['monte_carlo_stars']:,} stars here), mc = "
                f"{p['mc']}; `package_every_star_r100` the same fit on every train and "
                f"dev star at mc = 100, as before the subset.")
    out += "\n\n"
    for where, judged in f.items():
        if not isinstance(judged, dict) or where in ("infer_defaults", "package",
                                                     "subset_sweep") or not judged or \
                not all(isinstance(v, dict) and "coverage" in v for v in judged.values()):
            continue
        groups = list(next(iter(judged.values()))["coverage"])
        out += f"**{where}**\n\n"
        out += table(["candidate"] + groups + ["all cells in 0.60-0.76", "worst |cov - 0.683|"],
                     _coverage_rows(judged)) + "\n"
        if "package" in judged:
            out += f"`package`: {cells_in_band(judged['package']['coverage'])}.\n\n"
    if "subset_sweep" in f:
        out += _subset_sweep(f["subset_sweep"])
    if "infer_defaults" in f:
        d = f["infer_defaults"]
        how = ""
        if "calibrate_seconds" in d:
            sub = d["calibrate_subset"]
            how = (f" (calibration.json fitted again by `calibrate` with its defaults: "
                   f"{d['calibrate_seconds']} s, {sub['train_stars']:,} of "
                   f"{sub['train_stars_read']:,} training and {sub['dev_stars']:,} dev stars)")
        out += (f"`infer` with its defaults (sigma: {d['sigma']}{how}) on the test split: "
                f"{cells_in_band(d['coverage'])}, worst |cov - 0.683| "
                f"{d['worst_abs_dev_from_0.683']}.\n\n")
    return out + source(rec, "calibration") + "\n"


def _subset_sweep(sweep: dict) -> str:
    """How the calibration's subset size and mc were chosen (``--subsets``)."""
    where = [k for k in next(iter(sweep.values())) if k != "monte_carlo_stars"]
    out = ("**How the subset and mc were chosen** (`--subsets`): the package's fit with other "
           "subset sizes (training stars per stratum; dev at most 5x that) and draws per star, "
           "each drawn with ten seeds (the subset, and which of each star's 100 draws it keeps), "
           f"judged on {', '.join(where)}: the worst |cov - 0.683| over its cells, mean and "
           "largest over the seeds, and the seeds whose every cell is in 0.60-0.76.\n\n")
    rows = []
    for name, row in sweep.items():
        for w in where:
            r = row[w]
            rows.append([name, f"{row['monte_carlo_stars']:,}", r["worst_mean"], r["worst_max"],
                         f"{r['seeds_all_cells_in_band']} of {r['seeds']}"])
    return out + table(["setting", "stars in the Monte Carlo", "worst, mean", "worst, largest",
                        "seeds in 0.60-0.76"], rows) + "\n"


def calibration_cost_section() -> str:
    out = "## The calibration's cost as the survey grows (`bench/calibration_cost.py`)\n\n"
    rec = load("calibration_cost")
    if rec is None:
        return out + missing("calibration_cost", "bench/calibration_cost.py --all-stars")
    f = rec["figures"]
    out += (f"`calibrate` with its defaults (at most {f['stars_per_stratum']} training stars "
            f"per stratum, mc = {f['mc']}) on the 6,000-star survey of "
            "`bench/time_to_accuracy.py` and on the same survey repeated ten times (its train and "
            "dev shards listed ten times in one manifest), alternating, best of the repeats; "
            "from the call to the written calibration.json, TensorFlow already imported.\n\n")
    rows = []
    for name in ("6k", "60k"):
        v = f[name]
        rows.append([name, f"{v['train_stars_in_split']:,}", f"{v['dev_stars_in_split']:,}",
                     f"{v['train_stars_read']:,} / {v['dev_stars_read']:,}",
                     f"{v['monte_carlo_stars']:,}", fmt(v["best_seconds"]),
                     ", ".join(fmt(x) for x in v["seconds"])])
    out += table(["survey", "training stars", "dev stars", "stars read (train / dev)",
                  "stars in the Monte Carlo", "seconds (best)", "seconds (each)"], rows)
    out += (f"\n60,000 / 6,000 stars: **{f['ratio_60k_over_6k']}x** the time "
            f"({target(f['ratio_60k_over_6k'], '<=', FLAT, unit='x, flat')}).\n")
    if "all_stars_r100_6k" in f:
        a = f["all_stars_r100_6k"]
        out += (f"Before the subset (every train and dev star, mc = 100) the 6,000-star survey "
                f"took {fmt(a['seconds'])} s over {a['monte_carlo_stars']:,} stars: the subset "
                f"takes **{f['subset_over_all_stars_6k']}x** that.\n")
    return out + "\n" + source(rec, "calibration_cost") + "\n"


def export_section() -> str:
    out = "## Export (`bench/export.py`)\n\n"
    rec = load("export")
    if rec is None:
        return out + missing("export", "bench/export.py --model .bench/run_default")
    f = rec["figures"]
    model = (f" The model: the `bench/accuracy.py` run, trained with {recipe_words(rec)}."
             if rec.get("recipe") else "")
    out += ("Latency: the median of single-spectrum calls; throughput: batch 256. Parity: the "
            "largest |TFLite - Keras| over the 24 real DR13 apStar files, in percent of the run's "
            f"standard deviation of each label (Teff / log g / [Fe/H]).{model}\n\n")
    sm = f["saved_model"]
    rows = [["SavedModel `serving_default` (reference)", "", f"{sm['latency_ms']} ms",
             f"{fmt(sm['batch256_spectra_per_s'])}", ""]]
    for key, v in f.items():
        if key.startswith("tflite_"):
            worst = max(v.get("max_pct_of_std", []), default=None)
            parity = (" / ".join(str(x) for x in v["max_pct_of_std"])
                      + f" ({target(worst, '<=', 1, unit='%')})") if worst is not None else "n/a"
            rows.append([f"TFLite {key[7:]}", f"{v['bytes'] / 1e6:.1f} MB", f"{v['latency_ms']} ms",
                         fmt(v["batch256_spectra_per_s"]), parity])
    out += table(["model", "file size", "latency", "batch-256 spectra/s",
                  "parity, max % of std"], rows)
    return out + "\n" + source(rec, "export") + "\n"


def yso_section() -> str:
    out = "## YSO photometric network (`bench/yso.py`)\n\n"
    rec = load("yso")
    if rec is None:
        return out + missing("yso", "bench/yso.py")
    f = rec["figures"]
    out += (f"The paper's section 2.3 claim (log g to 0.01 dex, log Teff to 0.003 dex on a "
            f"separate synthetic sample), on the toy isochrones of `apnet_tf.labels."
            f"toy_isochrones` (not PARSEC): {f['n_train']:,} training stars, {f['epochs']} "
            f"epochs, {fmt(f['train_seconds'])} s; a quadratic fit on the same stars as the "
            f"reference ({f['reference_fit_seconds']} s).\n\n")
    rows = [[name, fmt(m.get("robust_sigma"), 4), fmt(m.get("rms"), 4), fmt(m.get("bias"), 4)]
            for name, m in f["test"].items() if isinstance(m, dict)]
    out += table(["output", "robust sigma", "rms", "bias"], rows)
    out += "\n" + "".join(
        f"Paper's {name}: robust sigma {fmt(f['test'][key]['robust_sigma'], 4)} "
        f"({target(f['test'][key]['robust_sigma'], '<=', bound, unit=' dex')}).\n"
        for key, name, bound in (("LOGG", "log g", 0.01), ("LOGTE", "log Teff", 0.003))) + "\n"
    return out + source(rec, "yso") + "\n"


def novelty_section() -> str:
    out = "## Stars unlike the training stars (`bench/novelty.py`)\n\n"
    rec = load("novelty")
    if rec is None:
        return out + missing("novelty", "bench/novelty.py")
    f = rec["figures"]
    t, o = f["teff_split"], f["other_generator"]
    out += (f"How many stars unlike the training stars get `NOVEL` (`NOVELTY` > 1), and how many "
            f"ordinary test stars do. A small synthetic survey ({f['survey_stars']:,} stars, "
            f"{f['train_fraction']:.0%} of each reference set as its training stars; the "
            f"distance reads the spectra, not the network, so no network is trained). **Teff "
            f"split**: reference of the stars below {t['cool_below_k']:.0f} K, ordinary = the "
            f"cool stars left out, to catch = the stars above {t['hot_above_k']:.0f} K "
            f"({t['novel_teff_range'][0]:.0f}-{t['novel_teff_range'][1]:.0f} K). **Other "
            f"generator**: reference of the whole survey's training part, ordinary = its "
            f"held-out stars, to catch = stars of `bench/_other_survey.py` (lines, continuum "
            f"and noise made another way, labels in the same ranges).\n\n")
    rows = []
    for name, r in (("Teff split", t), ("other generator", o)):
        rows.append([name, r["reference_stars"], r["novel_stars"],
                     f"{r['caught']:.1%} ({target(r['caught'], '>=', f['catch_target'], '90%')})",
                     f"{r['caught_far']:.1%}", r["ordinary_stars"],
                     f"{r['ordinary_flagged']:.1%} ("
                     f"{target(r['ordinary_flagged'], '<=', f['false_alarm_target'], '2%')})"])
    out += table(["experiment", "reference stars", "stars to catch", "caught (NOVEL)",
                  "of them FAR_FROM_TRAINING (BAD)", "ordinary stars", "ordinary flagged"], rows)
    if "between_caught" in t:
        out += (f"\nStars between the two cuts, neither cool nor hot: {t['between_caught']:.0%} "
                f"flagged.\n")
    return out + "\n" + source(rec, "novelty") + "\n"


def spikes_section() -> str:
    out = "## Spikes (`bench/spikes.py`)\n\n"
    rec = load("spikes")
    if rec is None:
        return out + missing("spikes", "bench/spikes.py")
    f = rec["figures"]
    r, lab = f["real"], f["labels"]
    out += (f"Real files: {r['detections']} spikes in {r['files_with_detections']} of the "
            f"{r['files']} apStar files of the test data (DR13, DR14, DR17). One pixel of each "
            f"real DR13 file raised to k times the star's median flux, "
            f"{r['injected_per_factor']} times per k, found: " + ", ".join(
                f"k = {k}: {v:.0%}" for k, v in r["injected_found"].items()) + ".\n\n")
    out += (f"A spike's effect on the labels of a small trained network ({f['survey_stars']} "
            f"synthetic stars, {f['epochs']} epochs, sigmas {lab['calibrated']}), over its "
            f"{lab['test_stars']} test stars, one spike each: the largest shift over the "
            f"calibrated sigma, with the spike masked (as infer does) and left in.\n\n")
    rows = []
    for k in ("5", "60"):
        res = lab[k]
        worst = max(res[c]["max_shift_over_sigma_masked"] for c in ("TEFF", "LOGG", "FE_H"))
        rows.append([f"{k}x median", f"{res['flagged']:.0%}"] + [
            f"{fmt(res[c]['max_shift_over_sigma_masked'])} / "
            f"{fmt(res[c]['max_shift_over_sigma_left_in'])}" for c in ("TEFF", "LOGG", "FE_H")]
            + [target(worst, "<=", 1.0, "1")])
    out += table(["spike", "flagged SPIKES", "Teff masked / left in", "log g", "[Fe/H]",
                  "largest masked shift"], rows)
    return out + "\n" + source(rec, "spikes") + "\n"


HEADER = """# Benchmarks

Every figure below comes from a results file in `bench/results/`, written by the script in
`bench/` named in each section's title, with the commit, the machine, the date, the command and
the load average of the machine when it ran. This page is made from those files by
`python bench/benchmarks_md.py`; nothing on it is typed by hand. Each figure is a ratio against a
reference measured in the same run, next to its absolute value. The scripts cache their
synthetic surveys under `.bench/` (git-ignored).

The project's machines are x86_64 with 2 cores and no GPU. Where the load average is above 2,
other jobs shared the cores: the absolute rates are then low, and the ratios (both sides measured
in the same run, alternating) are the figures to read. Earlier measurements, made before the
results files existed, are in the git history of this page (commit 46a1f2b and before).

"""


def page() -> str:
    sections = [records_section, train_section, determinism_section, accuracy_section,
                time_to_accuracy_section, information_section, cool_bias_section,
                refit_section,
                photometry_section, fit_anet3_section, infer_section, precision_section,
                published_section, published_bossnet_section, precision_bossnet_section,
                survey_section, projection_section, memory_section, memory_bossnet_section,
                calibration_section,
                calibration_cost_section, export_section, yso_section,
                novelty_section, spikes_section]
    return HEADER + "\n".join(s() for s in sections)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if BENCHMARKS.md is stale")
    args = ap.parse_args()
    text = page()
    if args.check:
        with open(PAGE) as f:
            sys.exit(0 if f.read() == text else 1)
    with open(PAGE, "w") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(PAGE)}")


if __name__ == "__main__":
    main()
