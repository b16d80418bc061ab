"""The catalog's flags (paper 3.5, 3.6, 4.1, 4.2): YSO candidates and their age bins (from the
paper's triangle, ``kiel``), grid edge, low S/N, BAD, and APNET_FLAG, a quality bitmask in the
manner of APOGEE's ASPCAPFLAG whose bits are named once in ``FLAG_BITS``. Plain numpy on arrays
of N stars."""

from __future__ import annotations

import dataclasses

import numpy as np

from apnet_tf.io.spikes import SPIKE_FRACTION, SPIKE_HALF_WINDOW, SPIKE_SIGMA
from apnet_tf.kiel import age_bin, in_triangle

__all__ = [
    "TEFF_EDGE_K", "LOW_SNR", "BAD_RANGE_MARGIN", "NONPOSITIVE_FRACTION", "BAD_ERROR_FRACTION",
    "FLUX_SCALE_RANGE", "WILD_FACTOR", "WILD_FRACTION", "MANY_BAD_FRACTION",
    "LARGE_SPREAD_FRACTION", "ASTRA_TEFF_RANGE", "ASTRA_LOGG_RANGE", "ASTRA_FE_H_TEFF",
    "ASTRA_FE_H_LOGG", "ASTRA_FE_H_RANGE", "ASTRA_SUSPICIOUS_TEFF", "ASTRA_SUSPICIOUS_LOGG",
    "FlagBit", "FLAG_BITS", "INPUT_GARBAGE", "BAD_BITS", "COMMENT_WIDTH", "flag_value",
    "flag_names", "flag_comments", "input_flags", "flags", "astra_flags", "NOVEL_PERCENTILE",
    "FAR_NOVEL_FACTOR", "spike_flags", "novelty_flags",
]

#: Paper 3.5: predictions above this Teff sit at the grid edge.
TEFF_EDGE_K = 6700.0
#: Paper 3.6: below this S/N the uncertainties are not reliable.
LOW_SNR = 20.0
#: How far outside the training label range (as a fraction of its width) counts as "far".
BAD_RANGE_MARGIN = 0.2
#: FLUX_NOT_POSITIVE: more than this fraction of the usable pixels hold flux <= 0.
NONPOSITIVE_FRACTION = 0.5
#: BAD_ERRORS: more than this fraction of the usable pixels have an error <= 0.
BAD_ERROR_FRACTION = 0.5
#: FLUX_SCALE: the median ``|flux|`` of the usable pixels must lie in this range (apStar units,
#: 1e-17 erg/s/cm^2/A; real DR13 stars: 14 to 15,000), and at most ``WILD_FRACTION`` of them may
#: lie more than ``WILD_FACTOR`` times above or below it (real DR13 stars: at most 0.01%;
#: byte-swapped float32: 92%, scattered from 1e-36 to 1e33).
FLUX_SCALE_RANGE = (1e-3, 1e10)
WILD_FACTOR = 1e3
WILD_FRACTION = 0.1
#: MANY_BAD_PIXELS: more than this fraction of the pixels masked (chip gaps alone: about 12%).
MANY_BAD_FRACTION = 0.5
#: LARGE_SPREAD: a raw Monte Carlo sigma above this fraction of the training label range.
LARGE_SPREAD_FRACTION = 0.15
#: SDSS astra's result flags of APOGEE Net III and BOSS Net (``models/apogeenet.py``,
#: ``models/bossnet.py``): Teff (K) and log g outside these (open) ranges are unreliable, and
#: [Fe/H] below ASTRA_FE_H_TEFF K, above log g ASTRA_FE_H_LOGG or outside ASTRA_FE_H_RANGE; BOSS
#: Net's [Fe/H] is suspicious below ASTRA_SUSPICIOUS_TEFF K with log g inside
#: ASTRA_SUSPICIOUS_LOGG.
ASTRA_TEFF_RANGE = (1700.0, 100000.0)
ASTRA_LOGG_RANGE = (-1.0, 10.0)
ASTRA_FE_H_TEFF = 3200.0
ASTRA_FE_H_LOGG = 5.0
ASTRA_FE_H_RANGE = (-4.0, 2.0)
ASTRA_SUSPICIOUS_TEFF = 3900.0
ASTRA_SUSPICIOUS_LOGG = (3.0, 6.0)
#: NOVEL: the novelty distance beyond this percentile of the training stars' distances
#: (NOVELTY, the distance in units of that percentile, above 1).
NOVEL_PERCENTILE = 99.9
#: FAR_FROM_TRAINING: NOVELTY above this factor: three times past the training stars' own
#: tail, where (bench/novelty.py) no ordinary test star was, and most stars of another
#: generator and the hottest stars of a cool-trained reference were.
FAR_NOVEL_FACTOR = 3.0


@dataclasses.dataclass(frozen=True)
class FlagBit:
    """One bit of APNET_FLAG: its number, name, whether it makes the star BAD, its meaning, and
    its test in a few words (a catalog header's COMMENT card for the bit: ``flag_comments``)."""

    bit: int
    name: str
    bad: bool
    meaning: str
    test: str = ""


#: The bits of APNET_FLAG. Bits 0-4 look at the input spectrum, 5-10 at the predictions, 11 at
#: the photometry inputs, 12-15 are SDSS astra's own flags of APOGEE Net III and BOSS Net (set
#: under astra's conventions only; BAD where astra's flag_bad is). A BAD bit makes the values
#: unusable (BAD = any BAD bit set); the input bits 0-3 also set the values and sigmas to NaN,
#: since the network's answer to such a spectrum means nothing. Bit 16 looks at the spectrum
#: again (spikes masked before the network), 17 and 18 at where it lies among the training
#: stars (``model.novelty``). Bits 19 and up are free.
FLAG_BITS = (
    FlagBit(0, "NO_USABLE_PIXEL", True, "no pixel with finite flux and a finite error below "
            "1e9 that the mask keeps",
            test="no unmasked pixel with finite flux, error < 1e9"),
    FlagBit(1, "FLUX_NOT_POSITIVE", True, "all-zero or mostly non-positive flux: over "
            f"{NONPOSITIVE_FRACTION:.0%} of the usable pixels <= 0 (e.g. sign-flipped)",
            test=f"flux <= 0 in over {NONPOSITIVE_FRACTION:.0%} of the usable pixels"),
    FlagBit(2, "BAD_ERRORS", True, f"over {BAD_ERROR_FRACTION:.0%} of the usable pixels have an "
            "error <= 0 (e.g. an all-zero error array): no usable uncertainty",
            test=f"error <= 0 in over {BAD_ERROR_FRACTION:.0%} of the usable pixels"),
    FlagBit(3, "FLUX_SCALE", True, "implausible flux scale: median absolute flux outside "
            f"{FLUX_SCALE_RANGE[0]:g} to {FLUX_SCALE_RANGE[1]:g}, or over {WILD_FRACTION:.0%} of "
            f"the pixels {WILD_FACTOR:g} times off the median (e.g. byte-swapped data)",
            test=f"median |flux| not in {FLUX_SCALE_RANGE[0]:g}-{FLUX_SCALE_RANGE[1]:g}, or "
            f">{WILD_FRACTION:.0%} {WILD_FACTOR:g}x off it"),
    FlagBit(4, "MANY_BAD_PIXELS", False, f"over {MANY_BAD_FRACTION:.0%} of the pixels masked",
            test=f"over {MANY_BAD_FRACTION:.0%} of the pixels masked"),
    FlagBit(5, "LOW_SNR", False, f"SNR below {LOW_SNR:g} (paper 3.6); uncertainties less "
            "reliable", test=f"SNR < {LOW_SNR:g}"),
    FlagBit(6, "TEFF_EDGE", False, f"Teff above {TEFF_EDGE_K:.0f} K, the training grid's edge "
            "(paper 3.5)",
            test=f"Teff > {TEFF_EDGE_K:.0f} K"),
    FlagBit(7, "OUTSIDE_LABEL_RANGE", True, f"a prediction over {BAD_RANGE_MARGIN:.0%} of the "
            "training label range outside it",
            test=f"a value {BAD_RANGE_MARGIN:.0%}+ of the training range outside it"),
    FlagBit(8, "NOT_FINITE", True, "a prediction or uncertainty is not finite",
            test="a value or sigma is NaN or infinite"),
    FlagBit(9, "ZERO_SPREAD", True, "Monte Carlo spread exactly 0 in a parameter: the noise "
            "draws changed nothing, so the uncertainty means nothing",
            test="Monte Carlo sigma exactly 0 in a parameter"),
    FlagBit(10, "LARGE_SPREAD", False, "raw Monte Carlo sigma above "
            f"{LARGE_SPREAD_FRACTION:.0%} of the training label range in a parameter",
            test=f"raw MC sigma > {LARGE_SPREAD_FRACTION:.0%} of the training range"),
    FlagBit(11, "PHOT_FILLED", False, "a two-input network (APOGEE Net II) got a fill value for "
            "a missing photometry band (which ones: the PHOT_FILLED column)",
            test="a Net II photometry band got its fill value"),
    FlagBit(12, "ASTRA_UNRELIABLE_TEFF", True, "astra's flag_unreliable_teff (APOGEE Net III, "
            f"BOSS Net): Teff below {ASTRA_TEFF_RANGE[0]:.0f} K or above "
            f"{ASTRA_TEFF_RANGE[1]:.0f} K",
            test=f"astra: Teff < {ASTRA_TEFF_RANGE[0]:.0f} K or > {ASTRA_TEFF_RANGE[1]:.0f} K"),
    FlagBit(13, "ASTRA_UNRELIABLE_LOGG", True, "astra's flag_unreliable_logg (APOGEE Net III, "
            f"BOSS Net): log g below {ASTRA_LOGG_RANGE[0]:g} or above {ASTRA_LOGG_RANGE[1]:g}",
            test=f"astra: log g < {ASTRA_LOGG_RANGE[0]:g} or > {ASTRA_LOGG_RANGE[1]:g}"),
    FlagBit(14, "ASTRA_UNRELIABLE_FE_H", True, "astra's flag_unreliable_fe_h (APOGEE Net III, "
            f"BOSS Net): Teff below {ASTRA_FE_H_TEFF:.0f} K, log g above {ASTRA_FE_H_LOGG:g}, "
            f"or [Fe/H] below {ASTRA_FE_H_RANGE[0]:g} or above {ASTRA_FE_H_RANGE[1]:g}",
            test=f"Teff<{ASTRA_FE_H_TEFF:.0f}K, logg>{ASTRA_FE_H_LOGG:g} or [Fe/H] not "
            f"{ASTRA_FE_H_RANGE[0]:g}..{ASTRA_FE_H_RANGE[1]:g}"),
    FlagBit(15, "ASTRA_SUSPICIOUS_FE_H", False, "astra's flag_suspicious_fe_h (BOSS Net): Teff "
            f"below {ASTRA_SUSPICIOUS_TEFF:.0f} K and log g between "
            f"{ASTRA_SUSPICIOUS_LOGG[0]:g} and {ASTRA_SUSPICIOUS_LOGG[1]:g}",
            test=f"astra: Teff < {ASTRA_SUSPICIOUS_TEFF:.0f} K, log g "
            f"{ASTRA_SUSPICIOUS_LOGG[0]:g}..{ASTRA_SUSPICIOUS_LOGG[1]:g}"),
    FlagBit(16, "SPIKES", False, "single-pixel outliers found, and masked before the "
            "package's own networks "
            f"(how many: N_SPIKES): a pixel over {SPIKE_SIGMA:g} times its error and "
            f"{SPIKE_FRACTION:.0%} of the flux level off the median of its "
            f"{2 * SPIKE_HALF_WINDOW} nearest usable neighbours, and above (or below) both of "
            "its two nearest (cosmic rays, hot pixels)",
            test=f"a pixel {SPIKE_SIGMA:g} sigma and {SPIKE_FRACTION:.0%} off its neighbours' "
            "median"),
    FlagBit(17, "NOVEL", False, "the spectrum lies beyond the training stars: its novelty "
            f"distance is past their {NOVEL_PERCENTILE:g}th percentile (NOVELTY > 1); the "
            "values are an extrapolation",
            test=f"NOVELTY > 1 (past the training stars' {NOVEL_PERCENTILE:g}th percentile)"),
    FlagBit(18, "FAR_FROM_TRAINING", True, f"NOVELTY above {FAR_NOVEL_FACTOR:g}: nothing like "
            "this spectrum was among the training stars, the values mean little",
            test=f"NOVELTY > {FAR_NOVEL_FACTOR:g}"),
)
_BY_NAME = {b.name: b for b in FLAG_BITS}


def flag_value(*names: str) -> int:
    """The APNET_FLAG value with the named bits set."""
    return sum(1 << _BY_NAME[n].bit for n in names)


#: The input bits that make the spectrum garbage (values and sigmas set to NaN).
INPUT_GARBAGE = flag_value("NO_USABLE_PIXEL", "FLUX_NOT_POSITIVE", "BAD_ERRORS", "FLUX_SCALE")
#: Every bit that makes a star BAD.
BAD_BITS = flag_value(*(b.name for b in FLAG_BITS if b.bad))


#: The text a FITS COMMENT card holds: one bit's test must fit in one card.
COMMENT_WIDTH = 72


def flag_comments() -> list[str]:
    """What each APNET_FLAG bit tests, one line per bit ("7 OUTSIDE_LABEL_RANGE BAD: ..."),
    after a line saying how to read them: a catalog header's COMMENT cards."""
    return (["APNET_FLAG = sum of 2**bit over the bits set; BAD = a BAD bit is set:"]
            + [f"{b.bit} {b.name}{' BAD' if b.bad else ''}: {b.test or b.meaning}"
               for b in FLAG_BITS])


def flag_names(value: int) -> list[str]:
    """The names of the bits set in one APNET_FLAG value."""
    return [b.name for b in FLAG_BITS if int(value) >> b.bit & 1]


def input_flags(flux, err, bad) -> np.ndarray:
    """APNET_FLAG bits 0-4 of (N, P) spectra: int64 (N,). ``bad``: the reader's pixel mask."""
    flux, err = np.asarray(flux, float), np.asarray(err, float)
    usable = ~np.asarray(bad, bool) & np.isfinite(flux) & np.isfinite(err)
    n = np.maximum(usable.sum(axis=1), 1)
    none = ~usable.any(axis=1)
    with np.errstate(invalid="ignore"):
        nonpositive = (usable & (flux <= 0)).sum(axis=1) / n
        zero_err = (usable & (err <= 0)).sum(axis=1) / n
        size = np.where(usable, np.abs(flux), np.nan)
        scale = np.nanmedian(np.where(none[:, None], 0.0, size), axis=1) if flux.size else (
            np.zeros(len(flux)))
        wild = (usable & ((size > scale[:, None] * WILD_FACTOR)
                          | (size < scale[:, None] / WILD_FACTOR))).sum(axis=1) / n
    lo, hi = FLUX_SCALE_RANGE
    bits = {"NO_USABLE_PIXEL": none,
            "FLUX_NOT_POSITIVE": ~none & (nonpositive > NONPOSITIVE_FRACTION),
            "BAD_ERRORS": ~none & (zero_err > BAD_ERROR_FRACTION),
            "FLUX_SCALE": ~none & (~((scale >= lo) & (scale <= hi)) | (wild > WILD_FRACTION)),
            "MANY_BAD_PIXELS": np.asarray(bad, bool).mean(axis=1) > MANY_BAD_FRACTION}
    return _pack(bits, len(flux))


def _pack(bits: dict[str, np.ndarray], n: int) -> np.ndarray:
    value = np.zeros(n, np.int64)
    for name, set_ in bits.items():
        value |= np.where(set_, np.int64(1) << _BY_NAME[name].bit, 0)
    return value


def flags(teff, logg, fe_h, sigma, snr, label_range, input_bits=None,
          raw_sigma=None) -> dict[str, np.ndarray]:
    """YSO_CANDIDATE, AGE_BIN, TEFF_EDGE, LOW_SNR, APNET_FLAG and BAD for a catalog.

    sigma: (N, 3), the catalog's sigma (all NaN without Monte Carlo); raw_sigma: (N, 3), the raw
    Monte Carlo spread (None without Monte Carlo); input_bits: ``input_flags`` of the spectra.
    """
    values = np.stack([teff, logg, fe_h], axis=1)
    sigma = np.asarray(sigma, float)
    finite = np.isfinite(values).all(axis=1) & (np.isfinite(sigma).all(axis=1) | np.isnan(
        sigma).all(axis=1))
    far, wide = np.zeros(len(values), dtype=bool), np.zeros(len(values), dtype=bool)
    raw = np.full_like(values, np.nan) if raw_sigma is None else np.asarray(raw_sigma, float)
    with np.errstate(invalid="ignore"):
        for k, (lo, hi) in enumerate(label_range):
            margin = BAD_RANGE_MARGIN * (hi - lo)
            far |= (values[:, k] < lo - margin) | (values[:, k] > hi + margin)
            wide |= raw[:, k] > LARGE_SPREAD_FRACTION * (hi - lo)
        yso = in_triangle(teff, logg)
        garbage = np.zeros(len(values), np.int64) if input_bits is None else np.asarray(
            input_bits, np.int64)
        bits = {"LOW_SNR": np.asarray(snr, float) < LOW_SNR,
                "TEFF_EDGE": np.asarray(teff) > TEFF_EDGE_K,
                "OUTSIDE_LABEL_RANGE": far,
                "NOT_FINITE": ~finite & ((garbage & INPUT_GARBAGE) == 0),
                "ZERO_SPREAD": (raw == 0).any(axis=1), "LARGE_SPREAD": wide}
    value = garbage | _pack(bits, len(values))
    return {"YSO_CANDIDATE": yso, "AGE_BIN": age_bin(logg, yso), "TEFF_EDGE": bits["TEFF_EDGE"],
            "LOW_SNR": bits["LOW_SNR"], "APNET_FLAG": value, "BAD": (value & BAD_BITS) != 0}


def astra_flags(teff, logg, fe_h, suspicious: bool = False) -> np.ndarray:
    """APNET_FLAG bits 12-15, SDSS astra's flags, of N predictions (Teff K, log g, [Fe/H]):
    int64 (N,). ``suspicious``: BOSS Net's fifth flag too. astra's comparisons are strict; a
    NaN value sets none (its NOT_FINITE bit says it)."""
    teff, logg, fe_h = (np.asarray(v, float) for v in (teff, logg, fe_h))
    with np.errstate(invalid="ignore"):
        bits = {"ASTRA_UNRELIABLE_TEFF": (teff < ASTRA_TEFF_RANGE[0])
                | (teff > ASTRA_TEFF_RANGE[1]),
                "ASTRA_UNRELIABLE_LOGG": (logg < ASTRA_LOGG_RANGE[0])
                | (logg > ASTRA_LOGG_RANGE[1]),
                "ASTRA_UNRELIABLE_FE_H": (teff < ASTRA_FE_H_TEFF) | (logg > ASTRA_FE_H_LOGG)
                | (fe_h < ASTRA_FE_H_RANGE[0]) | (fe_h > ASTRA_FE_H_RANGE[1])}
        if suspicious:
            bits["ASTRA_SUSPICIOUS_FE_H"] = ((teff < ASTRA_SUSPICIOUS_TEFF)
                                             & (logg > ASTRA_SUSPICIOUS_LOGG[0])
                                             & (logg < ASTRA_SUSPICIOUS_LOGG[1]))
    return _pack(bits, len(teff))
def spike_flags(n_spikes) -> np.ndarray:
    """APNET_FLAG bit SPIKES of N stars given how many spikes each had masked: int64 (N,)."""
    return _pack({"SPIKES": np.asarray(n_spikes) > 0}, len(np.atleast_1d(n_spikes)))


def novelty_flags(novelty) -> np.ndarray:
    """APNET_FLAG bits NOVEL and FAR_FROM_TRAINING of N stars' NOVELTY (the novelty distance in
    units of its training percentile; NaN where the model has no reference): int64 (N,)."""
    novelty = np.asarray(novelty, float)
    with np.errstate(invalid="ignore"):
        bits = {"NOVEL": novelty > 1.0, "FAR_FROM_TRAINING": novelty > FAR_NOVEL_FACTOR}
    return _pack(bits, len(novelty))
