"""How much of the spectra's information a trained run uses: Table 3 against the Cramér-Rao bound
of the package's synthetic survey.

For every star of a synthetic survey (``apnet_tf.data.synth``) the bound comes from the
generator's own forward model (``bench/_fisher.py``): numerical derivatives of the noiseless
spectrum in Teff, log g, [Fe/H], the extinction A_H and the flux scale, the per-pixel errors the
generator wrote, the pixels the record leaves good; the Fisher matrix, and the bound on each label
with the other four parameters marginalised (the square root of the diagonal of its inverse). It
is the smallest scatter an unbiased method could reach on that star. Table 3's scatter and bias of
a trained run (plain predictions, as ``fit`` tabulates them) are then set beside the bound's RMS
over the same stars, per split, group (Full, Payne, MStar, YSO) and S/N tercile, as ratios.

    python bench/information.py --fit [--n 6000] [--seed 23] [--set field=value ...] [--tag NAME]
    python bench/information.py --run RUN_DIR [--n N --seed S | --spectra DIR --records DIR]

``--fit`` runs ``apnet_tf.workflows.fit`` (what ``apnet-tf fit`` runs) with the default recipe
(and ``--set`` overrides) on the survey's records and times it; ``--run`` reads a trained run
folder (its best.keras) instead. The bounds of a survey are cached under .bench/ (a few minutes
for 6,000 stars).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    CACHE,
    GROUPS,
    SPLITS,
    add_tag,
    parse_overrides,
    report,
    run_recipe,
    survey_records,
)
from _fisher import SYNTH_PARAMS, SYNTH_STEPS, SynthForward, synth_star_bound  # noqa: E402

TARGETS = ("teff", "logg", "fe_h")


def true_labels(spectra: str) -> dict[str, tuple[np.ndarray, float]]:
    """APOGEE_ID -> (true (teff, logg, fe_h), A_H) of a synthetic survey folder.

    labels.csv leaves 2% of the labels out (-9999, as APOGEE tables do); the generator's seed and
    size in the folder's marker give them back (``draw_labels`` is the first draw of the survey's
    random stream). Without a marker the missing labels stay NaN (those stars get no bound)."""
    import pandas as pd

    from apnet_tf.data.synth import draw_labels
    from apnet_tf.io.folders import marker

    table = pd.read_csv(os.path.join(spectra, "labels.csv"))
    labels = table[["TEFF", "LOGG", "FE_H"]].to_numpy(float)
    labels[labels <= -9998] = np.nan
    params = (marker(spectra) or {}).get("survey")
    if params and params["n"] == len(table):
        drawn = draw_labels(params["n"], np.random.default_rng(params["seed"]))
        truth = drawn[["TEFF", "LOGG", "FE_H"]].to_numpy(float)
        shown = np.isfinite(labels)
        if not np.allclose(truth[shown], labels[shown], rtol=1e-5, atol=1e-4):
            raise SystemExit(f"{spectra}: labels.csv does not match its marker's seed")
        labels = truth
    return {i: (lab, float(a)) for i, lab, a in zip(table["APOGEE_ID"], labels, table["A_H"])}


def survey_bounds(spectra: str, records: str, check_every: int) -> dict[str, np.ndarray]:
    """apogee_id (N,), bound (N, 3) and step_check (N,) of every record of a synthetic survey,
    cached under .bench/; the step check (largest relative change of the bound when the steps
    are halved) is computed for every ``check_every``-th star, NaN for the others."""
    from apnet_tf.data.dataset import make_dataset

    name = os.path.basename(os.path.normpath(records))
    cache = os.path.join(CACHE, f"bound_{name}_{'_'.join(f'{s:g}' for s in SYNTH_STEPS)}.npz")
    if os.path.exists(cache):
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    truth, forward = true_labels(spectra), SynthForward()
    ids, bounds, checks = [], [], []
    t = time.perf_counter()
    for ex, _ in make_dataset(records, batch_size=256, features=("flux", "err", "bad",
                                                                  "apogee_id")):
        for j, sid in enumerate(ex["apogee_id"].numpy().astype(str)):
            labels, a_h = truth[sid]
            if not np.isfinite(labels).all():
                b, c = np.full(3, np.nan), np.nan
            else:
                b, c = synth_star_bound(forward, labels, a_h, ex["flux"][j].numpy(),
                                        ex["err"][j].numpy(), ex["bad"][j].numpy(),
                                        check_steps=len(ids) % check_every == 0)
            ids.append(sid)
            bounds.append(b)
            checks.append(c)
        print(f"bound: {len(ids)} stars, {time.perf_counter() - t:.0f} s", flush=True)
    out = {"apogee_id": np.array(ids), "bound": np.array(bounds), "step_check": np.array(checks),
           "seconds": np.array(time.perf_counter() - t)}
    os.makedirs(CACHE, exist_ok=True)
    np.savez(cache, **out)
    return out


def run_fit(records: str, run_dir: str, overrides: list[str]) -> dict:
    """``workflows.fit`` with the default recipe and ``overrides``; its wall time and effort."""
    from apnet_tf import workflows
    from apnet_tf.training.recipes import Recipe, get_recipe

    recipe = get_recipe("default", **parse_overrides(Recipe(), overrides))
    t = time.perf_counter()
    res = workflows.fit(records, run_dir, recipe=recipe, overwrite=True)
    return {"seconds": round(time.perf_counter() - t, 1), "epochs": res.epochs,
            "rounds": len(res.rounds), "overrides": overrides,
            "load_average_1min_after_fit": round(os.getloadavg()[0], 2)}


def predictions(run_dir: str, records: str) -> dict[str, np.ndarray]:
    """Plain predictions of a run's best.keras over the labelled records (``predict_records``:
    apogee_id, category, split, pred, labels, snr)."""
    import keras

    import apnet_tf.model.network  # noqa: F401  (registers the package's layers)
    from apnet_tf.evaluation.tables import predict_records

    model = keras.models.load_model(os.path.join(run_dir, "best.keras"))
    return predict_records(model, records, splits=list(SPLITS))


def group_stats(pred: np.ndarray, labels: np.ndarray, bound: np.ndarray) -> dict:
    """Scatter, bias and the bound's RMS of one group's stars, per target, and their ratios."""
    out: dict[str, list] = {k: [] for k in ("stars", "scatter", "bias", "bound_rms",
                                            "scatter_over_bound", "bias_over_bound")}
    for k in range(3):
        ok = np.isfinite(pred[:, k]) & np.isfinite(labels[:, k]) & np.isfinite(bound[:, k])
        r = pred[ok, k] - labels[ok, k]
        n = int(ok.sum())
        sc = float(np.std(r)) if n >= 2 else float("nan")
        bi = float(np.mean(r)) if n else float("nan")
        br = float(np.sqrt(np.mean(bound[ok, k] ** 2))) if n else float("nan")
        for key, v in zip(out, (n, sc, bi, br, sc / br if n else np.nan, bi / br if n else np.nan)):
            out[key].append(v if key == "stars" else round(float(v), 6))
    return out


def compare(p: dict[str, np.ndarray], bound: np.ndarray) -> dict:
    """{"groups": {split: {group: group_stats}}, "terciles": {split: {group: {"S/N a-b":
    group_stats}}}}: S/N terciles of each split's stars."""
    from apnet_tf.model.calibration import snr_bin

    groups, terciles = {}, {}
    for split in SPLITS:
        in_split = p["split"] == split
        snr = p["snr"][in_split]
        edges = np.quantile(snr, [1 / 3, 2 / 3])
        ends = [snr.min(), *edges, snr.max()]
        tercile = snr_bin(p["snr"], edges)
        groups[split], terciles[split] = {}, {}
        for group, cats in GROUPS.items():
            sel = in_split & np.isin(p["category"], cats)
            groups[split][group] = group_stats(p["pred"][sel], p["labels"][sel], bound[sel])
            terciles[split][group] = {
                f"S/N {ends[j]:.0f}-{ends[j + 1]:.0f}": group_stats(
                    p["pred"][sel & (tercile == j)], p["labels"][sel & (tercile == j)],
                    bound[sel & (tercile == j)]) for j in range(3)}
    return {"groups": groups, "terciles": terciles}


def judge(groups: dict) -> dict:
    """|Teff bias| / Teff scatter of the M dwarfs and YSOs in every split (at most 0.3 is a run
    that fits its cool stars)."""
    out = {f"{g} {s}": round(abs(groups[s][g]["bias"][0]) / groups[s][g]["scatter"][0], 3)
           for g in ("MStar", "YSO") for s in SPLITS}
    out["all <= 0.3"] = all(v <= 0.3 for v in out.values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--spectra", help="a synthetic survey folder (default: the cached --n/--seed)")
    ap.add_argument("--records", help="its record folder (with --spectra)")
    how = ap.add_mutually_exclusive_group(required=True)
    how.add_argument("--run", help="a trained run folder over these records")
    how.add_argument("--fit", action="store_true", help="fit the defaults first")
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides with --fit")
    ap.add_argument("--check-every", type=int, default=10,
                    help="halve the derivative steps on every k-th star to check them")
    add_tag(ap)
    args = ap.parse_args()

    if bool(args.spectra) != bool(args.records):
        ap.error("--spectra and --records go together")
    if args.spectra:
        spectra, records = args.spectra, args.records
    else:
        spectra, records = survey_records(args.n, args.seed)
    bounds = survey_bounds(spectra, records, args.check_every)
    fitted = None
    run_dir = args.run
    if args.fit:
        run_dir = os.path.join(CACHE, f"info_{os.path.basename(os.path.normpath(records))}"
                                      + (f"_{args.tag}" if args.tag else ""))
        fitted = run_fit(records, run_dir, args.set)
    p = predictions(run_dir, records)
    row = {sid: i for i, sid in enumerate(bounds["apogee_id"])}
    bound = bounds["bound"][[row[s] for s in p["apogee_id"]]]
    checks = bounds["step_check"][np.isfinite(bounds["step_check"])]
    figures = {"survey": os.path.relpath(spectra), "records": os.path.relpath(records),
               "run": os.path.relpath(run_dir), "fit": fitted, "stars": int(len(p["split"])),
               "bound": {"params": SYNTH_PARAMS, "steps": SYNTH_STEPS,
                         "seconds": round(float(bounds["seconds"]), 1),
                         "stars_step_checked": int(checks.size),
                         "step_check_max_rel_change": float(checks.max()) if checks.size else None},
               **compare(p, bound)}
    figures["teff_bias_over_scatter"] = judge(figures["groups"])
    report("information", figures, args.tag, recipe=run_recipe(run_dir))


if __name__ == "__main__":
    main()
