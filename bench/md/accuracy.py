"""BENCHMARKS.md's sections on what a `fit` learns and how fast: accuracy against a ridge
regression, the time to a trained and calibrated model, photometry, APOGEE Net III's layout
trained here, the YSO photometric network."""

from __future__ import annotations

from _common import group_key, table3_cell

from md._render import (
    TARGETS,
    _epochs,
    besides,
    fmt,
    load,
    missing,
    recipe_words,
    source,
    table,
    tagged,
    target,
)

__all__ = ["accuracy_section", "time_to_accuracy_section", "photometry_section",
           "fit_anet3_section", "yso_section"]


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


def _effort(r: dict) -> str:
    """A fit's seconds, epochs and rounds, in words."""
    e = r["epochs"]
    return (f"{fmt(r['seconds'])} s: {e.get('pretrain', 0)} pretraining epochs, "
            f"{e.get('finetune', 0)} fine-tuning epochs in {r['rounds']} rounds")


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
    out += (f"\n`fit` time (training, tables, calibration): apnet {_effort(runs['apnet'])}; "
            f"anet2 {_effort(runs['anet2'])}; anet2 / apnet "
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
    out += (f"\nTraining and tables: apnet {_effort(runs['apnet'])}; anet3 "
            f"{_effort(runs['anet3'])}; anet3 / apnet {f['seconds_ratio_anet3_over_apnet']}.\n\n")
    return out + source(rec, "fit_anet3") + "\n"


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
