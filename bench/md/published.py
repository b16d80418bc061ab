"""BENCHMARKS.md's sections on the published networks against the authors' PyTorch."""

from __future__ import annotations

from md._render import fmt, load, missing, source, table, target

__all__ = ["published_section", "published_bossnet_section"]


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
