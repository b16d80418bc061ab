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
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
PAGE = os.path.join(HERE, "..", "BENCHMARKS.md")
TARGETS = ("teff (K)", "logg (dex)", "fe_h (dex)")


def load(name: str) -> dict | None:
    path = os.path.join(RESULTS, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def source(rec: dict, name: str) -> str:
    """The line under each table: the results file, its command, commit, date and load."""
    return (f"Source: `bench/results/{name}.json` (`python {rec['command']}`, commit "
            f"`{rec['commit'][:10]}`, {rec['date'][:16].replace('T', ' ')} UTC, {rec['machine']}, "
            f"load average {rec.get('load_average_1min_at_end', 'n/a')} at the end).")


def missing(name: str, command: str) -> str:
    return (f"Not measured in this round: `python {command}` writes "
            f"`bench/results/{name}.json`.\n")


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
    out += ("`make-records` on synthetic apStar files, then the `tf.data` read of the records "
            "(parse + batch 128, shuffled, three passes) against the rate at which a Keras "
            "training step of the default recipe consumes spectra (batch 128), measured in the "
            "same run: reading must stay at least 10x ahead, so input never limits training.\n\n")
    out += table(["figure", "value"], [
        [f"`make-records`, {f['n_files']:,} files",
         f"{fmt(f['make_records_files_per_s'])} files/s"],
        ["`make_dataset` read", f"{fmt(f['read_spectra_per_s'])} spectra/s"],
        ["Keras training step, batch 128 (reference)",
         f"{fmt(f['keras_train_spectra_per_s'])} spectra/s"],
        ["**read / train**", f"**{f['read_over_train']}x** (target >= 10x)"]])
    return out + "\n" + source(rec, "records") + "\n"


def train_section() -> str:
    out = "## Training throughput (`bench/train.py`)\n\n"
    rec = load("train")
    if rec is None:
        return out + missing("train", "bench/train.py")
    f = rec["figures"]
    out += ("The Keras model as `fit` builds it against the paper's PyTorch network (Appendix B, "
            "`apnet_tf/model/torch_reference.py`), both at batch 128 on the same in-memory "
            "spectra with Adam, after warm-up; the runners alternate three times and each keeps "
            "its best rate.\n\n")
    rows = [["PyTorch, Appendix B, float32 (reference)", fmt(f["torch_spectra_per_s"]), "1"]]
    for key, label in (("keras_default_float32", "**Keras, default recipe (float32)**"),
                       ("keras_mixed_bfloat16", "Keras, `fit --precision mixed_bfloat16`")):
        if f"{key}_spectra_per_s" in f:
            rows.append([label, fmt(f[f"{key}_spectra_per_s"]),
                         f"{f[f'ratio_{key}_over_torch']}x"])
    out += table(["run", "spectra/s", "/ PyTorch"], rows)
    return out + "\n(target for the default: >= 3.5x)\n\n" + source(rec, "train") + "\n"


def determinism_section() -> str:
    out = "## The cost of `fit --deterministic` (`bench/determinism.py`)\n\n"
    rec = load("determinism")
    if rec is None:
        return out + missing("determinism", "bench/determinism.py --n 300 --epochs 3 --repeat 2")
    f = rec["figures"]
    out += (f"`fit --stage pretrain` on a {f['stars']}-star survey for {f['epochs']} epochs, "
            "each mode in a process of its own (op determinism is process-wide), alternating; "
            "the first epoch (tracing) is not counted.\n\n")
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
    out += (f"A {f['n_stars']:,}-star synthetic survey (`synth --seed 0`), `fit` with its "
            "defaults (pretraining and the rolling Payne fine-tuning) against a ridge regression "
            "on log flux fitted on the same train split (alpha chosen on dev). Test split, Full "
            "group, scatter = standard deviation of prediction - label.\n\n")
    s = f["test_scatter"]
    rows = [["ridge regression on log flux (reference)"] + [fmt(s[t]["ridge"], 4) for t in TARGETS],
            ["`fit` defaults, plain predictions (`fit`'s Table 3)"]
            + [fmt(s[t]["network"], 4) for t in TARGETS],
            ["**ridge / network**"] + [f"**{s[t]['ridge_over_network']}x**" for t in TARGETS],
            ["`fit` defaults, catalog values (mean of 100 Monte Carlo draws)"]
            + [fmt(s[t]["network_catalog_mc100"], 4) for t in TARGETS],
            ["ridge / catalog"] + [f"{s[t]['ridge_over_catalog']}x" for t in TARGETS]]
    out += table(["", "Teff (K)", "log g (dex)", "[Fe/H] (dex)"], rows)
    run = f["network_run"]
    out += (f"\nTarget: ridge / network >= 3 in each parameter "
            f"({'met' if f['accept_3x_plain_predictions'] else 'NOT met'}). The `fit` took "
            f"{fmt(run['seconds'])} s ({run['epochs']} epochs per stage, {run['rounds']} "
            "fine-tuning rounds).\n\n")
    out += source(rec, "accuracy") + "\n"
    return out + accuracy_variants()


def accuracy_variants() -> str:
    """The same command with recipe overrides (``--set ... --tag NAME``), one row each."""
    names = sorted(os.path.basename(p)[:-5] for p in os.listdir(RESULTS)
                   if p.startswith("accuracy-") and p.endswith(".json"))
    if not names:
        return ""
    rows = []
    for name in names:
        rec = load(name)
        f, s = rec["figures"], rec["figures"]["test_scatter"]
        rows.append([f"`python {rec['command']}`"]
                    + [f"{fmt(s[t]['network'], 4)} ({s[t]['ridge_over_network']}x)"
                       for t in TARGETS]
                    + [f"{fmt(f['network_run']['seconds'])} s", f"`bench/results/{name}.json`"])
    return ("\nThe same with other recipe fields (plain predictions, test split; ridge / network "
            "in brackets); without `--deterministic` no two runs are bit-identical:\n\n"
            + table(["command", "Teff (K)", "log g (dex)", "[Fe/H] (dex)", "fit time",
                     "source"], rows))


def infer_section() -> str:
    out = "## Inference (`bench/infer.py`)\n\n"
    rec = load("infer")
    if rec is None:
        return out + missing("infer", "bench/infer.py --seconds 10")
    f = rec["figures"]
    out += ("The default model in one process: plain inference at batch 256 against the paper's "
            "PyTorch network (Appendix B, eval mode, `no_grad`, batch 256); the Monte Carlo "
            "(R = 100, 32 stars per call, run in chunks of at most `MC_ROWS_PER_CHUNK` rows so "
            "that memory stays bounded) against plain inference on a batch 100 times as large, "
            "and against the same Monte Carlo in one chunk.\n\n")
    out += table(["figure", "value", "reference (same run)", "ratio"], [
        ["plain inference, batch 256", f"{fmt(f['plain_spectra_per_s_batch256'])} spectra/s",
         f"PyTorch: {fmt(f['torch_spectra_per_s_batch256'])} spectra/s",
         f"**{f['plain_over_torch']}x** (target >= 4x)"],
        ["Monte Carlo, R = 100, chunked (the package)",
         f"{fmt(f['mc_r100_stars_per_s'])} stars/s = {fmt(f['mc_r100_rows_per_s'])} rows/s",
         f"plain, batch 3,200: {fmt(f['plain_spectra_per_s_batch3200'])} spectra/s",
         f"**{f['mc_rows_over_plain_batch3200']}** (target >= 0.85)"],
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
    out += (f"`infer --precision`: the `bench/accuracy.py` run (`{f['run']}`) in float32 (the "
            "reference) and through its bfloat16 twin (same weights; convolutions and fc1, fc2 "
            "in bfloat16, outputs float32), in one process, alternating. Throughput on the "
            f"synthetic test split ({f['test_stars']} stars); bfloat16 computed in hardware on "
            f"this machine: {f['bfloat16_native']}.\n\n")
    t = f["throughput"]
    out += table(["figure", "float32 (reference)", "mixed_bfloat16", "bfloat16 / float32"], [
        ["plain, batch 256", f"{fmt(t['float32']['plain_spectra_per_s'])} spectra/s",
         f"{fmt(t['mixed_bfloat16']['plain_spectra_per_s'])} spectra/s",
         f"**{t['plain_spectra_per_s_bf16_over_f32']}x**"],
        ["Monte Carlo, R = 100, 32 stars per call",
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


def survey_section() -> str:
    out = "## Survey-scale inference (`bench/survey.py`)\n\n"
    rec = load("survey")
    if rec is None:
        return out + missing("survey", "bench/survey.py --n 600 --mc-n 32 --rss 3000 30000 --ray")
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
             "fits_parallel": "`infer` on FITS, 2 reader processes",
             "ray_fits": "`--engine ray` (local instance), FITS, `--mc 0`"}
    for key, label in names.items():
        if key in rates:
            rows.append([label, f"{fmt(rates[key])} spectra/s",
                         f"model alone: {fmt(rates['model'])} spectra/s",
                         fmt(f["ratio_to_model"][key])])
    for key, label in (("fits_mc100", "`infer` on FITS, `--mc 100`"),
                       ("ray_fits_mc100", "`--engine ray`, FITS, `--mc 100`")):
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
    return out + "\n" + source(rec, "survey") + "\n"


def memory_section() -> str:
    out = "## Memory (`bench/memory.py`)\n\n"
    rec = load("memory")
    if rec is None:
        return out + missing("memory", "bench/memory.py")
    f = rec["figures"]
    out += (f"Peak resident memory of each command in its own process, as a user runs it, on a "
            f"{f['survey_stars']:,}-star synthetic survey (an untrained network; memory does not "
            "depend on the weights), R = 100.\n\n")
    out += table(["command", "peak RSS", "reference (same run)"], [
        [f"`infer --model <SavedModel> --mc 100`, {f['stars_infer']} stars",
         f"**{f['infer_saved_model_mc100_gb']} GB** (target < 3 GB)",
         f"`--mc 0`: {f['infer_saved_model_plain_gb']} GB ({f['mc100_over_plain']}x)"],
        ["`calibrate --mc 100` (train + dev)", f"**{f['calibrate_mc100_gb']} GB**", ""],
        ["`evaluate --mc 100`", f"**{f['evaluate_mc100_gb']} GB**", ""]])
    out += f"\nAll under 3 GB: {f['accept_under_3gb']}.\n\n"
    return out + source(rec, "memory") + "\n"


def _coverage_rows(judged: dict) -> list[list]:
    rows = []
    for name, j in judged.items():
        cov = j["coverage"]
        cells = [" ".join(f"{v:.2f}" for v in cov[g][:3]) + f" ({cov[g][3]})" for g in cov]
        rows.append([name] + cells + [str(j["all_cells_in_0.60-0.76"]),
                                      j["worst_abs_dev_from_0.683"]])
    return rows


def calibration_section() -> str:
    out = "## Uncertainty calibration (`bench/calibration.py`)\n\n"
    rec = load("calibration")
    if rec is None:
        return out + missing("calibration", "bench/calibration.py --indep 3000 --infer")
    f = rec["figures"]
    out += ("Which calibration holds for every kind of star? The `bench/accuracy.py` default "
            "run's raw Monte Carlo (R = 100) once over train, dev and test; each candidate "
            "fitted on dev (the package's shape on train, level on dev), then judged on the test "
            "split and, with `--indep`, on every star of a second survey the network never saw. "
            "1-sigma coverage, Teff log g [Fe/H] (target 0.683; 0.60-0.76 in every cell), stars "
            "in brackets.\n\n")
    for where, judged in f.items():
        if not isinstance(judged, dict) or where == "infer_defaults" or not judged or \
                not all(isinstance(v, dict) and "coverage" in v for v in judged.values()):
            continue
        groups = list(next(iter(judged.values()))["coverage"])
        out += f"**{where}**\n\n"
        out += table(["candidate"] + groups + ["all cells in 0.60-0.76", "worst |cov - 0.683|"],
                     _coverage_rows(judged)) + "\n"
    if "infer_defaults" in f:
        d = f["infer_defaults"]
        out += (f"`infer` with its defaults (sigma: {d['sigma']}) on the test split: all cells in "
                f"0.60-0.76: {d['all_cells_in_0.60-0.76']}, worst |cov - 0.683| "
                f"{d['worst_abs_dev_from_0.683']}.\n\n")
    return out + source(rec, "calibration") + "\n"


def export_section() -> str:
    out = "## Export (`bench/export.py`)\n\n"
    rec = load("export")
    if rec is None:
        return out + missing("export", "bench/export.py --model .bench/run_default")
    f = rec["figures"]
    out += ("Latency: the median of single-spectrum calls; throughput: batch 256. Parity: the "
            "largest |TFLite - Keras| over the 24 real DR13 apStar files, in percent of the run's "
            "target standard deviation (Teff / log g / [Fe/H]; target 1% for float16 and "
            "int8).\n\n")
    sm = f["saved_model"]
    rows = [["SavedModel `serving_default` (reference)", "", f"{sm['latency_ms']} ms",
             f"{fmt(sm['batch256_spectra_per_s'])}", ""]]
    for key, v in f.items():
        if key.startswith("tflite_"):
            parity = " / ".join(str(x) for x in v.get("max_pct_of_std", [])) or "n/a"
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
    out += f"\nPaper's precision met: {f['accept_paper_2_3']}.\n\n"
    return out + source(rec, "yso") + "\n"


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
                infer_section, precision_section, survey_section, memory_section,
                calibration_section, export_section, yso_section]
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
