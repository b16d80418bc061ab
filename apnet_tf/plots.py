"""PNG figures: the training curve, and (for evaluate) Kiel diagrams and label-versus-prediction."""

from __future__ import annotations

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .constants import TARGET_UNITS, TARGETS  # noqa: E402
from .files import atomic_path  # noqa: E402


def _save(fig, path: str) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def training_curve(history_csv: str, path: str) -> str:
    """Train and dev loss against epoch, one panel per stage."""
    hist = pd.read_csv(history_csv)
    stages = list(dict.fromkeys(hist["stage"]))
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 4), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        h = hist[hist["stage"] == stage]
        ax.plot(h["epoch"], h["loss"], label="train")
        if "val_loss" in h:
            ax.plot(h["epoch"], h["val_loss"], label="dev")
            best = h["val_loss"].idxmin()
            ax.axvline(h.loc[best, "epoch"], color="grey", ls=":", label="best (kept)")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("standardised MSE")
        ax.set_title(stage)
        ax.legend()
    return _save(fig, path)


def label_vs_prediction(labels: np.ndarray, pred: np.ndarray, categories, path: str) -> str:
    """One panel per target: label (x) against prediction (y), coloured by category."""
    categories = np.asarray(categories).astype(str)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for k, ax in enumerate(axes):
        ok = np.isfinite(labels[:, k]) & np.isfinite(pred[:, k])
        for cat, colour in (("payne", "tab:blue"), ("mstar", "tab:orange"), ("yso", "tab:red")):
            sel = ok & (categories == cat)
            ax.scatter(labels[sel, k], pred[sel, k], s=4, alpha=0.6, color=colour, label=cat)
        if ok.any():
            lo, hi = np.nanmin(labels[ok, k]), np.nanmax(labels[ok, k])
            ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set_xlabel(f"label {TARGETS[k]} ({TARGET_UNITS[k]})")
        ax.set_ylabel(f"predicted {TARGETS[k]} ({TARGET_UNITS[k]})")
        ax.legend(markerscale=3, fontsize=8)
    return _save(fig, path)


def kiel_diagram(teff: np.ndarray, logg: np.ndarray, fe_h: np.ndarray, path: str,
                 title: str = "Kiel diagram") -> str:
    """Teff against log g, Teff decreasing to the right and log g increasing downward,
    coloured by [Fe/H]."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sc = ax.scatter(teff, logg, c=fe_h, s=5, cmap="viridis", vmin=-1.5, vmax=0.5)
    ax.invert_xaxis()
    ax.invert_yaxis()
    ax.set_xlabel("Teff (K)")
    ax.set_ylabel("log g (dex)")
    ax.set_title(title)
    fig.colorbar(sc, ax=ax, label="[Fe/H] (dex)")
    return _save(fig, path)


def sigma_vs_snr(snr: np.ndarray, sigma: np.ndarray, path: str) -> str:
    """Monte Carlo sigma of each parameter against S/N (paper Figure 4, right)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for k, ax in enumerate(axes):
        ok = np.isfinite(snr) & np.isfinite(sigma[:, k]) & (snr > 0)
        ax.scatter(snr[ok], sigma[ok, k], s=4, alpha=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("S/N")
        ax.set_ylabel(f"sigma {TARGETS[k]} ({TARGET_UNITS[k]})")
    return _save(fig, path)


def yso_sky_map(ra: np.ndarray, dec: np.ndarray, age_bins, path: str) -> str:
    """YSO candidates in galactic coordinates, coloured by age bin (paper Figures 7 and 8)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    from .inference import AGE_BIN_LABELS

    age_bins = np.asarray(age_bins).astype(str)
    fig = plt.figure(figsize=(10, 5.5))
    ax = fig.add_subplot(111, projection="aitoff")
    ok = np.isfinite(ra) & np.isfinite(dec)
    if ok.any():
        gal = SkyCoord(ra=ra[ok] * u.deg, dec=dec[ok] * u.deg, frame="icrs").galactic
        lon = -gal.l.wrap_at(180 * u.deg).radian  # longitude increasing to the left
        lat = gal.b.radian
        colours = plt.cm.plasma(np.linspace(0, 0.9, len(AGE_BIN_LABELS)))
        for label, colour in zip(AGE_BIN_LABELS, colours):
            sel = age_bins[ok] == label
            ax.scatter(lon[sel], lat[sel], s=6, color=colour, label=label)
        ax.legend(loc="lower right", fontsize=8, title="age (log g)")
    ax.grid(True)
    ax.set_title(f"YSO candidates in galactic coordinates ({int(ok.sum())} stars)", pad=24)
    return _save(fig, path)
