"""The paper's evaluation tables: Table 2 (combined standardised MSE) and Table 3 (scatter, with
the bias and the RMS beside it), and the 1-sigma coverage of the uncertainties.

Tables are computed per group and split (train, dev, test) from predictions and labels in
physical units; the groups are named as the categories are everywhere else: all (the paper's
"Full"), mstar, yso. Missing labels (NaN) are left out, target by target.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from apnet_tf.constants import CATEGORIES, MC_DRAWS, SPLITS, TARGET_UNITS, TARGETS
from apnet_tf.data.dataset import make_dataset
from apnet_tf.data.manifest import count_records
from apnet_tf.errors import ApnetError, check_seed, require_at_least
from apnet_tf.evaluation import plots, sky_map
from apnet_tf.inference.predict import predict_catalog
from apnet_tf.io import folders
from apnet_tf.io.catalog import catalog_arrays, write_catalog
from apnet_tf.io.files import locks_output, write_file
from apnet_tf.model.calibration import coverage, snr_bin
from apnet_tf.model.loading import load_model
from apnet_tf.model.network import predictor, standardized_mse, takes_photometry

__all__ = [
    "GROUPS", "scatter", "bias", "rms", "evaluation_tables", "format_table", "predict_records",
    "write_table", "write_tables", "table_std", "coverage_table", "evaluate", "EVALUATION_FILES",
    "read_evaluation"
]

#: The files ``evaluate`` writes in its folder.
EVALUATION_FILES = ("table2.csv", "table2.md", "table3.csv", "table3.md", "coverage.csv",
                    "coverage.md", "catalog.csv", "kiel.png", "label_vs_prediction.png",
                    "sigma_vs_snr.png", "yso_sky.png")
#: Groups of the paper's tables (its Full, MStar, YSO) and the categories each holds; named as
#: the coverage table, the figures and the CATEGORY column name them.
GROUPS = {"all": ("payne", "mstar", "yso"), "mstar": ("mstar",), "yso": ("yso",)}


def _per_target(pred: np.ndarray, labels: np.ndarray, stat, min_size: int) -> np.ndarray:
    out = np.full(3, np.nan)
    for k in range(3):
        r = pred[:, k] - labels[:, k]
        r = r[np.isfinite(r)]
        if r.size >= min_size:
            out[k] = float(stat(r))
    return out


def scatter(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Standard deviation of pred - label per target over present labels, shape (3,)."""
    return _per_target(pred, labels, np.std, 2)


def bias(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean of pred - label per target over present labels, shape (3,)."""
    return _per_target(pred, labels, np.mean, 1)


def rms(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Root mean square of pred - label per target (rms^2 = scatter^2 + bias^2), shape (3,)."""
    return _per_target(pred, labels, lambda r: np.sqrt(np.mean(r**2)), 1)


def evaluation_tables(pred: np.ndarray, labels: np.ndarray, categories, splits,
                      std, columns=SPLITS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tables 2 and 3 of the paper for any model and record set.

    Args:
        pred, labels: (N, 3) physical units, teff, logg, fe_h; labels NaN where missing.
        categories, splits: (N,) strings.
        std: the train-split target std used to standardise (3,).
        columns: the splits to tabulate, in SPLITS order (``evaluate --splits``).

    Returns:
        table2: rows all/mstar/yso, a column per split: combined standardised MSE.
        table3: rows (group, target); a column per split: scatter (standard deviation of
        prediction - label), then "<split> bias" (mean of prediction - label) and
        "<split> rms", in native units.
    """
    categories = np.asarray(categories).astype(str)
    splits = np.asarray(splits).astype(str)
    columns = [s for s in SPLITS if s in columns]
    t2, t3 = {}, {}
    for group, cats in GROUPS.items():
        in_group = np.isin(categories, cats)
        for split in columns:
            sel = in_group & (splits == split)
            t2[(group, split)] = standardized_mse(pred[sel], labels[sel], std) if sel.any() \
                else float("nan")
            for stat, fn in (("", scatter), (" bias", bias), (" rms", rms)):
                values = fn(pred[sel], labels[sel]) if sel.any() else np.full(3, np.nan)
                for k, name in enumerate(TARGETS):
                    t3[(group, f"{name} ({TARGET_UNITS[k]})", split + stat)] = values[k]
    table2 = pd.Series(t2).unstack()[columns].loc[list(GROUPS)]
    table2.index.name = "group"
    table3 = pd.Series(t3).unstack()[[s + stat for stat in ("", " bias", " rms")
                                      for s in columns]]
    order = [(g, f"{n} ({u})") for g in GROUPS for n, u in zip(TARGETS, TARGET_UNITS)]
    table3 = table3.loc[order]
    table3.index.names = ["group", "target"]
    return table2, table3


def format_table(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table."""
    flat = df.reset_index()
    head = "| " + " | ".join(str(c) for c in flat.columns) + " |"
    rule = "|" + "|".join("---" for _ in flat.columns) + "|"
    rows = []
    for row in flat.itertuples(index=False):
        cells = [f"{v:.{digits}g}" if isinstance(v, float) else str(v) for v in row]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule] + rows)


def predict_records(model, records_dir: str, splits=None, batch_size: int = 256,
                    labeled_only: bool = True) -> dict[str, np.ndarray]:
    """Run a Keras model over a record folder (a two-input model gets the records' stored
    photometry as its second input).

    Returns:
        apogee_id, category, split: (N,) str; pred, labels: (N, 3) physical units;
        snr, ra, dec: (N,) float.
    """
    predict = predictor(model)
    two_inputs = takes_photometry(model)
    ds = make_dataset(records_dir, splits=splits, batch_size=batch_size, features=None,
                      labeled_only=labeled_only)
    parts: dict[str, list] = {k: [] for k in ("apogee_id", "category", "split", "pred",
                                              "labels", "snr", "ra", "dec")}
    for ex, labels in ds:
        parts["pred"].append(predict(ex["flux"], ex["photometry"]) if two_inputs
                             else predict(ex["flux"]))
        parts["labels"].append(labels.numpy())
        for key in ("apogee_id", "category", "split"):
            parts[key].append(ex[key].numpy().astype(str))
        for key in ("snr", "ra", "dec"):
            parts[key].append(ex[key].numpy())
    return {k: np.concatenate(v) if v else np.empty((0, 3) if k in ("pred", "labels") else 0)
            for k, v in parts.items()}


def write_table(out_dir: str, name: str, df: pd.DataFrame, digits: int,
                float_format: str = "%.6g") -> list[str]:
    """Write ``df`` as ``name``.csv and ``name``.md in out_dir (atomically); return the paths."""
    paths = []
    for ext, text in (("csv", df.to_csv(float_format=float_format)),
                      ("md", format_table(df, digits) + "\n")):
        paths.append(os.path.join(out_dir, f"{name}.{ext}"))
        write_file(paths[-1], text)
    return paths


def write_tables(out_dir: str, table2: pd.DataFrame, table3: pd.DataFrame) -> list[str]:
    """Write table2 and table3 as CSV and Markdown (atomically); return the paths."""
    return write_table(out_dir, "table2", table2, 3) + write_table(out_dir, "table3", table3, 4)


def table_std(loaded) -> list[float]:
    """The run's train-split target std (3,) that Table 2 standardises with.

    From the run's normalization.json, else from the de-standardisation layer a Keras model
    carries. Never from the evaluated set: its own scatter would make Table 2 incomparable with
    the run's.

    Raises:
        ApnetError: neither is available (a SavedModel or TFLite file without its run).
    """
    std = (loaded.normalization or {}).get("std")
    if not std and loaded.kind == "keras":
        try:
            std = loaded.model.get_layer("labels").std
        except ValueError:
            std = None
    if not std or len(std) != 3:
        raise ApnetError(f"{loaded.path}: no normalization.json with the run's target std, which "
                         "Table 2 standardises with; evaluate the run folder or its .keras model")
    return [float(s) for s in std]


def _is_old_evaluation(folder: str) -> bool:
    """An evaluation folder written before folders had markers: it holds table2.csv."""
    return os.path.exists(os.path.join(folder, "table2.csv"))


def coverage_table(pred: np.ndarray, labels: np.ndarray, sigmas: dict[str, np.ndarray],
                   categories, splits, snr) -> pd.DataFrame:
    """1-sigma coverage (fraction of stars with ``|pred - label| < sigma``) per kind of sigma,
    split and group: all stars, each category (payne, mstar, yso), and each S/N tercile of the
    split.

    Args:
        pred, labels: (N, 3); sigmas: name -> (N, 3); categories, splits: (N,) str; snr: (N,).

    Returns:
        Rows (sigma, split, group); columns teff, logg, fe_h and stars (the group's size). A
        tercile group is named by its S/N range, e.g. "S/N 12.1-40.3".
    """
    categories, splits = np.asarray(categories).astype(str), np.asarray(splits).astype(str)
    snr = np.asarray(snr, float)
    rows = {}
    for split in [s for s in SPLITS if (splits == s).any()]:
        in_split = splits == split
        groups = [("all", in_split)] + [(c, in_split & (categories == c)) for c in CATEGORIES]
        finite = snr[in_split & np.isfinite(snr)]
        if finite.size:
            edges = np.quantile(finite, [1 / 3, 2 / 3])
            bounds = [finite.min(), *edges, finite.max()]
            tercile = snr_bin(snr, edges)
            groups += [(f"S/N {bounds[j]:.1f}-{bounds[j + 1]:.1f}", in_split & (tercile == j))
                       for j in range(3)]
        for kind, sigma in sigmas.items():
            for group, sel in groups:
                if sel.any():
                    rows[(kind, split, group)] = [*coverage(pred[sel], sigma[sel], labels[sel]),
                                                  int(sel.sum())]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[*TARGETS, "stars"])
    table["stars"] = table["stars"].astype(int)
    table.index = pd.MultiIndex.from_tuples(table.index, names=["sigma", "split", "group"])
    return table


@folders.reads_input("model_path")
@locks_output("out_dir")
def evaluate(model_path: str, records_dir: str, out_dir: str, mc: int = MC_DRAWS,
             seed: int = 0, splits=SPLITS, on_progress=None) -> dict:
    """Tables 2 and 3, 1-sigma coverage, and the PNG figures for any model and record set.

    Writes to ``out_dir``: table2/table3/coverage (.csv, .md), catalog.csv (raw Monte Carlo
    sigmas; ``infer`` writes calibrated ones by default), kiel.png, label_vs_prediction.png,
    sigma_vs_snr.png (the calibrated sigma when there is one, beside the raw one) and
    yso_sky.png. Coverage (``coverage_table``) is reported for the raw Monte Carlo sigmas (input
    noise only, as in the paper) and, when the model has a calibration, for the calibrated
    sigmas, per split, category and S/N tercile. ``splits`` limits the work to
    some of train, dev and test.

    Returns:
        {"table2", "table3", "coverage"} DataFrames and the list of files written.
    """
    require_at_least(mc, 2, "--mc")  # coverage needs a spread
    check_seed(seed)
    # a re-run replaces its own tables and plots; another folder's files are never touched
    folders.check(out_dir, "evaluation", legacy=_is_old_evaluation)
    splits = tuple(splits)
    if count_records(records_dir, splits) == 0:
        raise ApnetError(f"{records_dir}: no labelled records in the {', '.join(splits)} "
                         "split(s): evaluate compares predictions with labels; make the records "
                         "with make-records --labels")
    loaded = load_model(model_path)
    loaded.refuse_without_photometry("evaluate", records_dir)
    std = table_std(loaded)
    folders.claim(out_dir, "evaluation", legacy=_is_old_evaluation)
    # one Monte Carlo pass: the calibrated sigma is a function of the raw one
    raw = predict_catalog(loaded, [records_dir], mc=mc, on_progress=on_progress,
                          seed=seed, split_filter=splits, calibrated=False).catalog
    labels, pred, sigma = catalog_arrays(raw)
    snr = np.asarray(raw["SNR"], float)
    sigmas = {"raw (MC input noise)": sigma}
    if loaded.calibration is not None:
        sigmas["calibrated"] = loaded.calibration.sigma(pred, sigma, snr)
    cats, where = np.asarray(raw["CATEGORY"]).astype(str), np.asarray(raw["SPLIT"]).astype(str)
    table2, table3 = evaluation_tables(pred, labels, cats, where, std, columns=splits)
    cov = coverage_table(pred, labels, sigmas, cats, where, snr)
    files = write_tables(out_dir, table2, table3)
    files += write_table(out_dir, "coverage", cov, 3, float_format="%.4f")
    files.append(write_catalog(raw, os.path.join(out_dir, "catalog.csv")))
    files += _write_figures(out_dir, raw, sigmas, splits)
    return {"table2": table2, "table3": table3, "coverage": cov, "files": files}


def _write_figures(out_dir: str, raw, sigmas: dict[str, np.ndarray], splits) -> list[str]:
    """kiel.png, label_vs_prediction.png, sigma_vs_snr.png (the calibrated sigma, what
    ``infer``'s catalog holds, as the main series when ``sigmas`` has one, beside the raw
    Monte Carlo sigma) and yso_sky.png in ``out_dir`` for the raw-sigma catalog ``raw``
    (N rows); ``sigmas``: name -> (N, 3). Returns the paths."""
    labels, pred, sigma = catalog_arrays(raw)
    snr = np.asarray(raw["SNR"], float)
    fe_h = np.concatenate([labels[:, 2], pred[:, 2]])
    fe_h = fe_h[np.isfinite(fe_h)]  # the colour scale covers labels and predictions
    files = [plots.kiel_diagram(pred[:, 0], pred[:, 1], pred[:, 2],
                                os.path.join(out_dir, "kiel.png"),
                                f"Kiel diagram of the predictions ({plots.describe(splits)})",
                                (fe_h.min(), fe_h.max()) if fe_h.size else None)]
    files.append(plots.label_vs_prediction(labels, pred, np.asarray(raw["CATEGORY"]).astype(str),
                                           os.path.join(out_dir, "label_vs_prediction.png"),
                                           plots.describe(splits)))
    files.append(plots.sigma_vs_snr(snr, sigma, os.path.join(out_dir, "sigma_vs_snr.png"),
                                    plots.describe(splits), calibrated=sigmas.get("calibrated")))
    yso = np.asarray(raw["YSO_CANDIDATE"], bool)
    files.append(sky_map.yso_sky_map(np.asarray(raw["RA"], float)[yso],
                                     np.asarray(raw["DEC"], float)[yso],
                                     np.asarray(raw["AGE_BIN"])[yso],
                                     os.path.join(out_dir, "yso_sky.png"),
                                     plots.describe(splits)))
    return files


def read_evaluation(out_dir: str) -> dict:
    """An evaluation folder's tables read back from its CSVs, with the rows as ``evaluate``
    returns them: table2 (rows group), table3 (rows group, target) and coverage (rows sigma,
    split, group); "files": the paths of ``EVALUATION_FILES`` present. The values are those
    written (table2 and table3 to 6 significant digits, coverage to 4 decimals)."""
    def read(name: str, levels: int) -> pd.DataFrame:
        return pd.read_csv(os.path.join(out_dir, f"{name}.csv"), index_col=list(range(levels)))

    files = [os.path.join(out_dir, name) for name in EVALUATION_FILES
             if os.path.exists(os.path.join(out_dir, name))]
    return {"table2": read("table2", 1), "table3": read("table3", 2),
            "coverage": read("coverage", 3), "files": files}
