"""What APOGEE Net III and BOSS Net do around the network, in the two pipelines of their
authors: SDSS astra's (``pipelines/apogeenet``, ``pipelines/bossnet``: the DR19 catalogs, the
default) and the hutchresearch/BOSSNet repository's (``pipeline.py``). ``conventions(arch,
convention)`` is what run.json and export_metadata.json record; astra's catalog rules (its error
model and result flags) are ``ASTRA_ERROR_MODEL`` and ``ASTRA_FLAGS``.
"""

from __future__ import annotations

from apnet_tf.model.bossnet import (
    ANET3_MEAN,
    ANET3_ORDER,
    ANET3_STD,
    BOSS_ARCHS,
    BOSS_GRID,
    BOSSNET_MEAN,
    BOSSNET_ORDER,
    BOSSNET_STD,
    CONVENTIONS,
    n_pixels_of,
)

__all__ = ["ASTRA_MC", "ASTRA_ERROR_MODEL", "ASTRA_FLAGS", "conventions"]

#: astra's number of Monte Carlo draws per spectrum (both tasks' default).
ASTRA_MC = 20
#: astra's APOGEE Net III noise model (models/apogeenet.py apply_noise_model): sigma = a * raw
#: sigma + b, per output. BOSS Net has none.
ASTRA_ERROR_MODEL = {"teff": (1.25, 10.0), "logg": (1.25, 0.01), "fe_h": (1.0, 0.01)}
#: astra's result_flags bits (models/apogeenet.py, models/bossnet.py apply_result_flags), each
#: (bit, rule); comparisons are strict. suspicious_fe_h is BOSS Net's only.
ASTRA_FLAGS = {
    "runtime_exception": (0, "the network could not run on the spectrum"),
    "unreliable_teff": (1, "teff < 1700 or teff > 100000"),
    "unreliable_logg": (2, "logg < -1 or logg > 10"),
    "unreliable_fe_h": (3, "teff < 3200 or logg > 5 or fe_h < -4 or fe_h > 2"),
    "suspicious_fe_h": (4, "teff < 3900 and 3 < logg < 6"),
}

_SOURCE = {"anet3": "APOGEE Net III (BOSS Net architecture, Sizemore et al. 2024), "
                    "hutchresearch/BOSSNet bossnet/model_apogee",
           "bossnet": "BOSS Net (Sizemore et al. 2024, AJ 167, 173), hutchresearch/BOSSNet "
                      "bossnet/model_boss"}
_CLIP = "ln(max(flux, 1e-6)), clipped above at the 95th percentile (torch.quantile) + 1"
_ASTRA_ERR = ("ivar -> err = ivar**-0.5; err above 5 x the median finite err (numpy median, "
              "bad pixels included) and NaN err (ivar < 0) -> 5 x that median; every err "
              "infinite -> 0.1 x the median flux")


def _inputs(arch: str, convention: str) -> dict:
    astra = convention == "astra"
    if arch == "anet3":
        flux = ("row 0 of apStar HDU 1 (a 1-D file's only row), "
                + ("NaN -> 0" if astra else "NaN and +-inf -> 0"))
        err = (f"row 0 of HDU 2 -> ivar = err**-2 (not finite -> 0) -> {_ASTRA_ERR}" if astra
               else "row 0 of HDU 2 as is, NaN and +-inf -> 0 (no noise there), no clip")
        return {"flux": flux, "err": err + " (Monte Carlo only)", "model_input": "raw flux",
                "in_model": f"NaN -> 0, {_CLIP} of each spectrum"}
    start, stop, n = BOSS_GRID
    return {
        "flux": "spec-*.fits HDU 1 column flux; wavelength = 10**loglam (float32)",
        "err": f"HDU 1 column ivar: {_ASTRA_ERR} (Monte Carlo only)",
        "resample": ("NaN flux -> 0, then " if astra else "NaN-flux pixels dropped, then ")
        + "np.interp (float64, the end values beyond the ends) onto the grid, to float32",
        "grid": {"start": start, "stop": stop, "n": n,
                 "float32": "torch.linspace: step = float32(5100) / float32(3899); i < 1950: "
                            "3800 + step * i, else 8900 - step * (3899 - i), rounded once"},
        "model_input": f"flux on the {n}-point grid", "in_model": f"{_CLIP} of each spectrum"}


def _mc(arch: str, convention: str) -> dict:
    where = ("each draw resampled onto the grid, then " if arch == "bossnet" else "")
    common = {"style": convention, "mc": ASTRA_MC, "value": "the un-noised pass",
              "sigma_stat": "std (ddof 1) of the draws, Teff as log10 Teff"}
    if convention == "astra":
        return {**common, "noise": "err x N(0, 1) on every native pixel",
                "clip": where + "one 95th-percentile level over the star's whole stack of draws",
                "teff_sigma": "10**log10 Teff(un-noised) x std(log10 Teff) x ln 10",
                "median": "computed, not reported"}
    return {**common, "noise": "err x N(0, 1) on every native pixel whose flux is not NaN",
            "clip": where + "each draw's own 95th percentile",
            "median": "the lower median of the draws (torch.median), reported",
            "teff_sigma": "reported as the std of log10 Teff",
            "default_mc": "none (their -u is 0 unless given)"}


def conventions(arch: str, convention: str = "astra") -> dict:
    """What a run folder (run.json) and an export (export_metadata.json) record of APOGEE Net
    III ("anet3") or BOSS Net ("bossnet") run under ``convention`` ("astra" or
    "hutchresearch"): the input rules, the network's output order and constants, the Monte
    Carlo, and for astra its catalog's error model and flags.

    Raises:
        ValueError: an unknown arch or convention.
    """
    if arch not in BOSS_ARCHS or convention not in CONVENTIONS:
        raise ValueError(f"arch {arch!r} / convention {convention!r}: expected one of "
                         f"{BOSS_ARCHS} / {CONVENTIONS}")
    order, mean, std = ((ANET3_ORDER, ANET3_MEAN, ANET3_STD) if arch == "anet3"
                        else (BOSSNET_ORDER, BOSSNET_MEAN, BOSSNET_STD))
    record = {"arch": arch, "convention": convention, "source": _SOURCE[arch],
              "n_pixels": n_pixels_of(arch), "input": _inputs(arch, convention),
              "output_order": list(order), "mean": list(mean), "std": list(std),
              "outputs": ["teff", "logg", "fe_h"] + (["rv"] if arch == "bossnet" else []),
              "mc": _mc(arch, convention)}
    if convention == "astra":
        flags = {k: list(v) for k, v in ASTRA_FLAGS.items()
                 if arch == "bossnet" or k != "suspicious_fe_h"}
        record["catalog"] = {"flags": flags, "error_model": (
            {k: list(v) for k, v in ASTRA_ERROR_MODEL.items()} if arch == "anet3" else None)}
    return record
