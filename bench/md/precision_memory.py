"""BENCHMARKS.md's sections on inference precision (float32 against bfloat16) and on memory."""

from __future__ import annotations

from md._render import fmt, load, missing, recipe_words, source, table, tagged, target

__all__ = ["precision_section", "precision_bossnet_section", "memory_section",
           "memory_bossnet_section"]


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
