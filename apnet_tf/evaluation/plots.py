"""PNG figures: the training curve, and (for evaluate) Kiel diagrams, label against prediction
and sigma against S/N; the YSO sky map is in ``sky_map``. Axis labels say the quantity in words
and its unit; the evaluation figures' titles say which split(s) and which kind of sigma they
show (``note``)."""

from __future__ import annotations

import os

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from apnet_tf.io.files import atomic_path

__all__ = [
    "QUANTITIES", "SHORT", "CATEGORY_COLOURS", "describe", "training_curve",
    "label_vs_prediction", "kiel_diagram", "CALIBRATED_LABEL", "RAW_LABEL",
    "sigma_series", "sigma_vs_snr", "kept_epoch", "save_figure", "subplots"
]

#: Axis names of teff, logg, fe_h, in words with their units.
QUANTITIES = ("effective temperature Teff (K)", "surface gravity log g (dex)",
              "metallicity [Fe/H] (dex)")
SHORT = ("Teff (K)", "log g (dex)", "[Fe/H] (dex)")
CATEGORY_COLOURS = (("payne", "tab:blue"), ("mstar", "tab:orange"), ("yso", "tab:red"))
_KEPT_LABEL = "kept model (best.keras)"
#: Tick labels 1, 2, 5 x 10^n written as plain numbers (10, 20, 50, 100, ...).
_PLAIN = mticker.FuncFormatter(lambda v, _: f"{v:g}")


def save_figure(fig, path: str) -> str:
    """Write ``fig`` to ``path`` as a PNG (atomically) and return ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    return path


def subplots(*grid, **options):
    """``(figure, axes)`` as ``pyplot.subplots`` makes them, without pyplot: the figures are
    only saved, so no backend is chosen here, and a notebook's stays as it was."""
    fig = Figure(figsize=options.pop("figsize", None), layout=options.pop("layout", None))
    return fig, fig.subplots(*grid, **options)


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


def _read_rounds(history_csv: str, rounds_csv: str | None) -> pd.DataFrame | None:
    """The fine-tuning rounds table: ``rounds_csv``, else finetune_rounds.csv beside
    ``history_csv``; None when there is none."""
    path = rounds_csv or os.path.join(os.path.dirname(history_csv), "finetune_rounds.csv")
    if not os.path.exists(path):
        return None
    rounds = pd.read_csv(path)
    # the average of the rounds (``finetuning.average_rounds``) trained no epochs of its own
    return rounds[rounds["round"].astype(str) != "average"] if "round" in rounds else rounds


def _round_ends(rounds: pd.DataFrame | None) -> list[int]:
    """Cumulative fine-tuning epoch at which each round ended."""
    if rounds is None or "epochs" not in rounds:
        return []
    return [int(e) for e in np.cumsum(rounds["epochs"])]


def _improved(rounds: pd.DataFrame) -> np.ndarray:
    """(R,) bool: whether each round's model was kept (column ``improved``, as bool or text)."""
    return rounds["improved"].astype(str).str.strip().str.lower().isin(("true", "1")).to_numpy()


def kept_epoch(history: pd.DataFrame, rounds: pd.DataFrame | None
               ) -> tuple[str, int] | None:
    """(stage, epoch) of the model a run kept (best.keras), or None without dev losses.

    Args:
        history: history.csv's rows: stage ("pretrain" or "finetune"), epoch (fine-tuning
            epochs counted across rounds, the rounds' epochs in order), val_loss.
        rounds: finetune_rounds.csv's rows (columns ``epochs`` and ``improved``), or None.

    The kept model is the best epoch (lowest val_loss) of the last round that improved; when
    no round did (or there were none), the pretraining's best epoch. A later round with a
    lower dev loss that was not kept is not it.
    """
    if "val_loss" not in history:
        return None
    tune = history[(history["stage"] == "finetune") & history["val_loss"].notna()]
    if rounds is not None and {"epochs", "improved"} <= set(rounds) and len(tune):
        kept = np.flatnonzero(_improved(rounds))
        if kept.size:
            last = int(kept[-1])
            first = int(np.sum(rounds["epochs"].iloc[:last]))
            tune = tune.sort_values("epoch", kind="stable")
            rows = tune[(tune["epoch"] > first)
                        & (tune["epoch"] <= first + int(rounds["epochs"].iloc[last]))]
            if len(rows):
                return "finetune", int(rows.loc[rows["val_loss"].idxmin(), "epoch"])
    pre = history[(history["stage"] == "pretrain") & history["val_loss"].notna()]
    if not len(pre):
        return None
    return "pretrain", int(pre.loc[pre["val_loss"].idxmin(), "epoch"])


def training_curve(history_csv: str, path: str, rounds_csv: str | None = None) -> str:
    """Train and dev loss against epoch, one panel per stage; fine-tuning rounds are shaded in
    turn and numbered, and the epoch whose weights were kept (best.keras, ``kept_epoch``) is
    marked. ``rounds_csv``: finetune_rounds.csv (default: the one beside ``history_csv``)."""
    hist = pd.read_csv(history_csv)
    rounds = _read_rounds(history_csv, rounds_csv)
    kept = kept_epoch(hist, rounds)
    stages = list(dict.fromkeys(hist["stage"]))
    titles = {"pretrain": "pretraining (all training stars)",
              "finetune": "fine-tuning (rolling 5% Payne resample)"}
    fig, axes = subplots(1, len(stages), figsize=(6 * len(stages), 4.4), squeeze=False,
                             layout="constrained")
    for ax, stage in zip(axes[0], stages):
        h = hist[hist["stage"] == stage]
        ends = _round_ends(rounds) if stage == "finetune" else []
        lines = _break_at(h, [h["epoch"].min() - 1 + e for e in ends[:-1]])
        ax.plot(lines["epoch"], lines["loss"], label="training loss", color="tab:blue")
        if "val_loss" in h and h["val_loss"].notna().any():
            ax.plot(lines["epoch"], lines["val_loss"], label="dev loss", color="tab:orange")
        if kept is not None and kept[0] == stage:
            ax.axvline(kept[1], color="k", ls=":", label=_KEPT_LABEL)
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
    return save_figure(fig, path)


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
    fig, axes = subplots(1, 3, figsize=(15, 5), layout="constrained")
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
    return save_figure(fig, path)


def kiel_diagram(teff: np.ndarray, logg: np.ndarray, fe_h: np.ndarray, path: str,
                 title: str = "Kiel diagram", fe_h_range: tuple[float, float] | None = None
                 ) -> str:
    """Teff against log g, Teff decreasing to the right and log g increasing downward,
    coloured by [Fe/H] over ``fe_h_range`` (default: the full range of ``fe_h``)."""
    fig, ax = subplots(figsize=(7, 5.8), layout="constrained")
    finite = np.asarray(fe_h, float)[np.isfinite(fe_h)]
    lo, hi = fe_h_range or ((finite.min(), finite.max()) if finite.size else (-2.5, 0.5))
    sc = ax.scatter(teff, logg, c=fe_h, s=5, cmap="viridis", vmin=lo, vmax=hi)
    ax.invert_xaxis()
    ax.invert_yaxis()
    ax.set_xlabel(QUANTITIES[0])
    ax.set_ylabel(QUANTITIES[1])
    ax.set_title(title)
    fig.colorbar(sc, ax=ax, label=QUANTITIES[2])
    return save_figure(fig, path)


#: Legend labels of the two kinds of sigma.
CALIBRATED_LABEL = "calibrated sigma (as in the catalog)"
RAW_LABEL = "raw Monte Carlo sigma (input noise only)"


def sigma_series(raw: np.ndarray, calibrated: np.ndarray | None = None
                 ) -> list[tuple[str, np.ndarray, dict]]:
    """The series sigma_vs_snr draws, main series first: (legend label, (N, 3) sigma, scatter
    style). With a calibration the calibrated sigma (what the catalog holds) leads and the raw
    Monte Carlo sigma follows in grey; without one, only the raw sigma, labelled as such."""
    main = {"s": 5, "alpha": 0.7, "color": "tab:blue", "zorder": 2}
    if calibrated is None:
        return [(RAW_LABEL, raw, main)]
    return [(CALIBRATED_LABEL, calibrated, main),
            (RAW_LABEL, raw, {"s": 3, "alpha": 0.4, "color": "0.6", "zorder": 1})]


def sigma_vs_snr(snr: np.ndarray, sigma: np.ndarray, path: str, note: str = "",
                 calibrated: np.ndarray | None = None) -> str:
    """Sigma of each parameter against S/N (paper Figure 4, right), one panel per parameter.

    Args:
        snr: (N,). sigma: (N, 3) the raw Monte Carlo sigma. calibrated: (N, 3) the calibrated
            sigma when the model has a calibration: then it is the main series and the raw
            one a second, grey series (legend below the panels, ``sigma_series``).
    """
    series = sigma_series(sigma, calibrated)
    fig, axes = subplots(1, 3, figsize=(15, 4.8), layout="constrained")
    for k, ax in enumerate(axes):
        for label, values, style in series:
            ok = (np.isfinite(snr) & np.isfinite(values[:, k]) & (snr > 0)
                  & (values[:, k] > 0))
            ax.scatter(snr[ok], values[ok, k], label=label if k == 0 else None, **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_ticks(ax.xaxis)
        _log_ticks(ax.yaxis)
        ax.set_xlabel("signal-to-noise ratio S/N of the spectrum")
        ax.set_ylabel(f"1-sigma uncertainty of {SHORT[k]}")
    kinds = ("calibrated sigma (the catalog's), raw Monte Carlo sigma in grey"
             if calibrated is not None else "raw Monte Carlo sigma, input noise only")
    fig.suptitle(f"Uncertainty against S/N: {kinds}" + (f" ({note})" if note else ""))
    fig.legend(loc="outside lower center", ncol=len(series), markerscale=3, frameon=False)
    return save_figure(fig, path)
