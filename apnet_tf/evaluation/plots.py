"""PNG figures: the training curve, and (for evaluate) Kiel diagrams, label against prediction,
sigma against S/N and the YSO sky map. Axis labels say the quantity in words and its unit; the
evaluation figures' titles say which split(s) and which kind of sigma they show (``note``)."""

from __future__ import annotations

import os

import matplotlib
import matplotlib.ticker as mticker

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from apnet_tf.io.catalog_flags import AGE_BIN_LABELS
from apnet_tf.io.files import atomic_path  # noqa: E402

__all__ = [
    "QUANTITIES", "SHORT", "CATEGORY_COLOURS", "describe", "training_curve",
    "label_vs_prediction", "kiel_diagram", "sigma_vs_snr", "yso_sky_map"
]

#: Axis names of teff, logg, fe_h, in words with their units.
QUANTITIES = ("effective temperature Teff (K)", "surface gravity log g (dex)",
              "metallicity [Fe/H] (dex)")
SHORT = ("Teff (K)", "log g (dex)", "[Fe/H] (dex)")
CATEGORY_COLOURS = (("payne", "tab:blue"), ("mstar", "tab:orange"), ("yso", "tab:red"))
#: Tick labels 1, 2, 5 x 10^n written as plain numbers (10, 20, 50, 100, ...).
_PLAIN = mticker.FuncFormatter(lambda v, _: f"{v:g}")


def _save(fig, path: str) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _log_ticks(axis, lo: float | None = None, hi: float | None = None) -> None:
    """Plain-number log ticks: at 1, 2 and 5 x 10^n, or at every 1-9 x 10^n when the data
    (``lo`` to ``hi``) span less than a decade, so a short range still shows several labels."""
    short = lo is not None and hi is not None and 0 < lo and hi < 10 * lo
    subs = tuple(range(1, 10)) if short else (1.0, 2.0, 5.0)
    axis.set_major_locator(mticker.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(_PLAIN)
    axis.set_minor_formatter(mticker.NullFormatter())


def describe(splits, sigma: str | None = None) -> str:
    """What an evaluation figure shows, for its title: 'dev + test splits; sigma: raw MC'."""
    text = " + ".join(splits) + (" splits" if len(splits) > 1 else " split")
    return text + (f"; sigma: {sigma}" if sigma else "")


def _round_ends(history_csv: str) -> list[int]:
    """Cumulative fine-tuning epoch at which each round ended (from finetune_rounds.csv)."""
    path = os.path.join(os.path.dirname(history_csv), "finetune_rounds.csv")
    if not os.path.exists(path):
        return []
    rounds = pd.read_csv(path)
    return list(np.cumsum(rounds["epochs"])) if "epochs" in rounds else []


def training_curve(history_csv: str, path: str) -> str:
    """Train and dev loss against epoch, one panel per stage; fine-tuning rounds are shaded in
    turn and numbered, and the epoch whose weights were kept is marked."""
    hist = pd.read_csv(history_csv)
    stages = list(dict.fromkeys(hist["stage"]))
    titles = {"pretrain": "pretraining (all training stars)",
              "finetune": "fine-tuning (rolling 5% Payne resample)"}
    fig, axes = plt.subplots(1, len(stages), figsize=(6 * len(stages), 4.4), squeeze=False,
                             layout="constrained")
    for ax, stage in zip(axes[0], stages):
        h = hist[hist["stage"] == stage]
        ends = _round_ends(history_csv) if stage == "finetune" else []
        lines = _break_at(h, [h["epoch"].min() - 1 + e for e in ends[:-1]])
        ax.plot(lines["epoch"], lines["loss"], label="training loss", color="tab:blue")
        if "val_loss" in h and h["val_loss"].notna().any():
            ax.plot(lines["epoch"], lines["val_loss"], label="dev loss", color="tab:orange")
            best = h["val_loss"].idxmin()
            ax.axvline(h.loc[best, "epoch"], color="grey", ls=":", label="lowest dev loss")
        if ends:
            _mark_rounds(ax, ends, h["epoch"].min())
        ax.set_yscale("log")
        losses = h[[c for c in ("loss", "val_loss") if c in h]].to_numpy(float)
        _log_ticks(ax.yaxis, np.nanmin(losses), np.nanmax(losses))
        ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch" + (" (counted across rounds)" if stage == "finetune" else ""))
        ax.set_ylabel("loss: standardised mean squared error")
        ax.set_title(titles.get(stage, stage), pad=14)  # room for the round numbers
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for hnd, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(hnd)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False)
    return _save(fig, path)


def _break_at(h: pd.DataFrame, epochs: list[int]) -> pd.DataFrame:
    """``h`` with an empty row after each of ``epochs``, so that the curve of one fine-tuning
    round is not joined to the next (each round starts again from the best weights)."""
    gaps = pd.DataFrame({"epoch": [e + 0.5 for e in epochs]})
    return pd.concat([h, gaps]).sort_values("epoch", kind="stable").reset_index(drop=True)


def _mark_rounds(ax, ends: list[int], first_epoch: int) -> None:
    """Shade every other fine-tuning round and number the rounds along the top of the panel."""
    start = first_epoch - 0.5
    for i, end in enumerate(ends):
        stop = first_epoch + end - 0.5
        if i % 2 == 0:
            ax.axvspan(start, stop, color="0.9", zorder=0,
                       label="fine-tuning rounds (numbered; odd ones shaded)" if i == 0 else None)
        ax.text((start + stop) / 2, 1.01, str(i + 1), transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=7, color="0.4")
        start = stop


def label_vs_prediction(labels: np.ndarray, pred: np.ndarray, categories, path: str,
                        note: str = "") -> str:
    """One panel per parameter: label (x) against prediction (y), coloured by label source."""
    categories = np.asarray(categories).astype(str)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5), layout="constrained")
    for k, ax in enumerate(axes):
        ok = np.isfinite(labels[:, k]) & np.isfinite(pred[:, k])
        for cat, colour in CATEGORY_COLOURS:
            sel = ok & (categories == cat)
            ax.scatter(labels[sel, k], pred[sel, k], s=4, alpha=0.6, color=colour,
                       label=f"{cat} labels" if k == 0 else None)
        if ok.any():
            lo, hi = np.nanmin(labels[ok, k]), np.nanmax(labels[ok, k])
            ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, label="prediction = label"
                    if k == 0 else None)
        ax.set_xlabel(f"label: {QUANTITIES[k]}")
        ax.set_ylabel(f"predicted {SHORT[k]}")
        ax.xaxis.set_major_locator(mticker.MaxNLocator(5))
    fig.suptitle("Predicted against label" + (f" ({note})" if note else ""))
    fig.legend(loc="outside lower center", ncol=4, markerscale=3, frameon=False)
    return _save(fig, path)


def kiel_diagram(teff: np.ndarray, logg: np.ndarray, fe_h: np.ndarray, path: str,
                 title: str = "Kiel diagram", fe_h_range: tuple[float, float] | None = None
                 ) -> str:
    """Teff against log g, Teff decreasing to the right and log g increasing downward,
    coloured by [Fe/H] over ``fe_h_range`` (default: the full range of ``fe_h``)."""
    fig, ax = plt.subplots(figsize=(7, 5.8), layout="constrained")
    finite = np.asarray(fe_h, float)[np.isfinite(fe_h)]
    lo, hi = fe_h_range or ((finite.min(), finite.max()) if finite.size else (-2.5, 0.5))
    sc = ax.scatter(teff, logg, c=fe_h, s=5, cmap="viridis", vmin=lo, vmax=hi)
    ax.invert_xaxis()
    ax.invert_yaxis()
    ax.set_xlabel(QUANTITIES[0])
    ax.set_ylabel(QUANTITIES[1])
    ax.set_title(title)
    fig.colorbar(sc, ax=ax, label=QUANTITIES[2])
    return _save(fig, path)


def sigma_vs_snr(snr: np.ndarray, sigma: np.ndarray, path: str, note: str = "") -> str:
    """Monte Carlo sigma of each parameter against S/N (paper Figure 4, right)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    for k, ax in enumerate(axes):
        ok = np.isfinite(snr) & np.isfinite(sigma[:, k]) & (snr > 0) & (sigma[:, k] > 0)
        ax.scatter(snr[ok], sigma[ok, k], s=4, alpha=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_ticks(ax.xaxis)
        _log_ticks(ax.yaxis)
        ax.set_xlabel("signal-to-noise ratio S/N of the spectrum")
        ax.set_ylabel(f"1-sigma uncertainty of {SHORT[k]}")
    fig.suptitle("Uncertainty against S/N" + (f" ({note})" if note else ""))
    return _save(fig, path)


def yso_sky_map(ra: np.ndarray, dec: np.ndarray, age_bins, path: str, note: str = "") -> str:
    """YSO candidates in galactic coordinates, coloured by age bin (paper Figures 7 and 8).

    A rectangular l-b map (l increasing to the left, equal degrees on both axes) keeps every
    tick label on the frame, clear of the points; the legend sits outside, on the right."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord


    age_bins = np.asarray(age_bins).astype(str)
    fig, ax = plt.subplots(figsize=(11, 5), layout="constrained")
    ok = np.isfinite(ra) & np.isfinite(dec)
    if ok.any():
        gal = SkyCoord(ra=ra[ok] * u.deg, dec=dec[ok] * u.deg, frame="icrs").galactic
        lon, lat = gal.l.wrap_at(180 * u.deg).deg, gal.b.deg
        colours = plt.cm.plasma(np.linspace(0, 0.9, len(AGE_BIN_LABELS)))
        for label, colour in zip(AGE_BIN_LABELS, colours):
            sel = age_bins[ok] == label
            ax.scatter(lon[sel], lat[sel], s=8, color=colour, label=f"{label} ({sel.sum()})")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                  title="age from log g\n(paper 4.2)", frameon=False)
    else:
        ax.text(0, 0, "no YSO candidates", ha="center", va="center", color="0.4")
    ax.set_xlim(180, -180)
    ax.set_ylim(-90, 90)
    ax.set_aspect("equal")
    ax.set_xticks(np.arange(-180, 181, 60))
    ax.set_yticks(np.arange(-90, 91, 30))
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}°"))
    ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}°"))
    ax.set_xlabel("galactic longitude l")
    ax.set_ylabel("galactic latitude b")
    ax.grid(True, color="0.85", lw=0.6)
    ax.set_title(f"YSO candidates in galactic coordinates ({int(ok.sum())} stars"
                 + (f"; {note})" if note else ")"))
    return _save(fig, path)
