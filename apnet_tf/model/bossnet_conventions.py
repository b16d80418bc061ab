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

__all__ = ["ASTRA_MC", "ASTRA_ERROR_MODEL", "ASTRA_FLAGS", "TRAINING_RANGE", "training_range",
           "conventions"]

#: astra's number of Monte Carlo draws per spectrum (both tasks' default).
ASTRA_MC = 20
#: astra's APOGEE Net III noise model (models/apogeenet.py apply_noise_model): sigma = a * raw
#: sigma + b, per output. BOSS Net has none.
ASTRA_ERROR_MODEL = {"teff": (1.25, 10.0), "logg": (1.25, 0.01), "fe_h": (1.0, 0.01)}
#: astra's result_flags bits (models/apogeenet.py, models/bossnet.py apply_result_flags), each
#: (bit, rule, the APNET_FLAG bit that carries it); comparisons are strict. suspicious_fe_h is
#: BOSS Net's only. A spectrum the network could not run on is flagged by APNET_FLAG's input
#: and NOT_FINITE bits.
ASTRA_FLAGS = {
    "runtime_exception": (0, "the network could not run on the spectrum",
                          "NO_USABLE_PIXEL, FLUX_NOT_POSITIVE, BAD_ERRORS, FLUX_SCALE, "
                          "NOT_FINITE"),
    "unreliable_teff": (1, "teff < 1700 or teff > 100000", "ASTRA_UNRELIABLE_TEFF"),
    "unreliable_logg": (2, "logg < -1 or logg > 10", "ASTRA_UNRELIABLE_LOGG"),
    "unreliable_fe_h": (3, "teff < 3200 or logg > 5 or fe_h < -4 or fe_h > 2",
                        "ASTRA_UNRELIABLE_FE_H"),
    "suspicious_fe_h": (4, "teff < 3900 and 3 < logg < 6", "ASTRA_SUSPICIOUS_FE_H"),
}
#: The authors' stats files' PNMIN and PNMAX, in the network's output order: the least and
#: largest standardised training label ("post-normalisation"; neither code uses them). They
#: give the label range the package's flags judge a prediction by (``training_range``).
TRAINING_RANGE = {
    "anet3": ((-3.2758333384990697, -5.2989908487604165, -8.926531221275827),
              (3.3389749999999996, 9.387230328989702, 4.568167)),
    "bossnet": ((-4.403565883333333, -6.324908332532, -7.496200000000001, -9.116415791127874),
                (6.584444444444444, 12.000000000000002, 4.4496842, 9.074319773706897)),
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
              "sigma_stat": "std (ddof 1) of the draws, Teff as log10 Teff",
              "teff_sigma": "10**log10 Teff(un-noised) x std(log10 Teff) x ln 10",
              "p50": "the lower median of the draws (torch.median)",
              "bad_pixels": "noise like any other pixel (infer --mc-bad-pixels fill: none)"}
    if convention == "astra":
        return {**common, "noise": "err x N(0, 1) on every native pixel",
                "clip": where + "one 95th-percentile level over the star's whole stack of draws",
                "median": "computed, not reported"}
    return {**common, "noise": "err x N(0, 1) on every native pixel whose flux is not NaN",
            "clip": where + "each draw's own 95th percentile",
            "median": "the lower median of the draws, reported (here: P50)",
            "teff_reported": "std of log10 Teff (here: in K, as astra's)",
            "default_mc": "none (their -u is 0 unless given)"}


def training_range(arch: str) -> tuple[list[float], list[float]]:
    """(least, largest) training label of APOGEE Net III or BOSS Net in the package's order and
    units (Teff K, log g, [Fe/H]), from ``TRAINING_RANGE``: what normalization.json's min and
    max record of an import."""
    order, mean, std = ((ANET3_ORDER, ANET3_MEAN, ANET3_STD) if arch == "anet3"
                        else (BOSSNET_ORDER, BOSSNET_MEAN, BOSSNET_STD))
    out = []
    for ends in TRAINING_RANGE[arch]:
        values = []
        for name in ("teff", "logg", "fe_h"):
            j = order.index("log_teff" if name == "teff" else name)
            v = mean[j] + std[j] * ends[j]
            values.append(float(10.0 ** v) if name == "teff" else float(v))
        out.append(values)
    return out[0], out[1]


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
              "instrument": "apogee" if arch == "anet3" else "boss",
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
