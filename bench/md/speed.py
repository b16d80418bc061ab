"""BENCHMARKS.md's sections on speed: reading records, training, `fit --deterministic`,
inference, survey-scale jobs and their projection to DR17 and DR19, export."""

from __future__ import annotations

from md._render import default_name, fmt, load, missing, recipe_words, source, table, target

__all__ = ["records_section", "train_section", "determinism_section", "infer_section",
           "survey_section", "projection_section", "export_section"]


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
