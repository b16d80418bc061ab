"""Spikes (APNET_FLAG bit SPIKES): what the finder finds in real files, which injected spikes
it finds, and how far a spike moves a trained network's labels once masked, in units of the
calibrated sigma (the issue's requirement: no more than 1).

* **real files**: the detections in every apStar file of ``../shared/data`` (DR13, DR14, DR17);
* **injected**: one pixel of each real DR13 file raised to k times the star's median flux, at a
  random usable pixel, for each k of ``--factors``: the fraction found;
* **labels**: a small network trained by ``fit`` (a cached synthetic survey of ``--n`` stars,
  ``--epochs`` epochs) infers its test stars as written and with one spike each (k = 5 and 60,
  a random usable pixel); the largest shift of each label over the calibrated sigma, with the
  spike masked (what infer does) and, for comparison, with the spike left in (the network's
  plain pass on the unmasked flux).

Usage: python bench/spikes.py [--n 600] [--epochs 8]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil

import numpy as np
from _common import CACHE, ROOT, report, run_recipe, survey_records

from apnet_tf.io.spectra import read_apstar
from apnet_tf.io.spikes import find_spikes

DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")


def _inject(flux, bad, factor: float, rng) -> int:
    ok = np.flatnonzero(~bad & (flux > 0))
    pixel = int(rng.choice(ok[(ok > 10) & (ok < len(flux) - 10)]))
    flux[pixel] = factor * np.median(flux[ok])
    return pixel


def real_files(factors, seed: int) -> dict:
    files = sorted(glob.glob(os.path.join(DATA, "**", "apStar*.fits"), recursive=True))
    specs = [read_apstar(f) for f in files]
    found = [int(find_spikes(s.flux[None], s.err[None], s.bad[None]).sum()) for s in specs]
    rng = np.random.default_rng(seed)
    dr13 = [s for f, s in zip(files, specs) if "dr13" in f]
    caught = {}
    for k in factors:
        hits = []
        for s in dr13:
            for _ in range(10):
                flux = s.flux.copy()
                pixel = _inject(flux, s.bad, k, rng)
                hits.append(bool(find_spikes(flux[None], s.err[None], s.bad[None])[0, pixel]))
        caught[f"{k:g}"] = float(np.mean(hits))
    return {"files": len(files), "files_with_detections": int(np.count_nonzero(found)),
            "detections": int(sum(found)), "injected_per_factor": 10 * len(dr13),
            "injected_found": caught}


def _spiked_folder(src_files, out: str, factor: float, seed: int) -> None:
    from astropy.io import fits

    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    rng = np.random.default_rng(seed)
    for path in src_files:
        with fits.open(path) as hdul:
            data = hdul[1].data.astype(np.float32)
            row = data if data.ndim == 1 else data[0]
            _inject(row, read_apstar(path).bad, factor, rng)
            hdul[1].data = data
            hdul.writeto(os.path.join(out, os.path.basename(path)))


def label_shifts(n: int, epochs: int, factors, seed: int) -> dict:
    import pandas as pd

    from apnet_tf.constants import LABEL_COLUMNS
    from apnet_tf.inference.predict import predict_catalog
    from apnet_tf.model.loading import load_model
    from apnet_tf.training.recipes import get_recipe
    from apnet_tf.workflows import fit

    spectra, records = survey_records(n, seed)
    run = os.path.join(CACHE, f"spikes_run{n}_e{epochs}")
    if not os.path.exists(os.path.join(run, "calibration.json")):
        fit(records, run, recipe=get_recipe("default", epochs=epochs, seed=seed),
            overwrite=True)
    model = load_model(run)
    cat0 = predict_catalog(model, [records], mc=20, seed=seed, split_filter=["test"]).catalog
    labels = pd.read_csv(os.path.join(spectra, "labels.csv"))
    ids = set(str(i) for i in cat0["APOGEE_ID"])
    files = [os.path.join(spectra, f) for f, i in zip(labels.FILE, labels.APOGEE_ID)
             if str(i) in ids]
    clean = predict_catalog(model, files, mc=20, seed=seed).catalog
    out = {"run": os.path.basename(run), "test_stars": len(files),
           "calibrated": clean.meta.get("SIGMA")}
    for k in factors:
        folder = os.path.join(CACHE, f"spiked_{n}_{k:g}")
        _spiked_folder(files, folder, k, seed)
        spiked = predict_catalog(model, [folder], mc=20, seed=seed).catalog
        order = {str(i): j for j, i in enumerate(spiked["APOGEE_ID"])}
        rows = [order[str(i)] for i in clean["APOGEE_ID"]]
        left_in = model.predict(np.stack([read_apstar(os.path.join(folder, os.path.basename(
            str(f)))).flux for f in clean["FILE"]]))
        plain = model.predict(np.stack([read_apstar(str(f)).flux for f in clean["FILE"]]))
        res = {"flagged": float(np.mean(np.asarray(spiked["APNET_FLAG"])[rows] & (1 << 12) > 0))}
        for c, col in enumerate(LABEL_COLUMNS):
            sigma = np.asarray(clean[f"{col}_ERR"], float)
            masked = np.abs(np.asarray(spiked[col], float)[rows] - np.asarray(clean[col], float))
            res[col] = {"max_shift_over_sigma_masked": float(np.nanmax(masked / sigma)),
                        "max_shift_over_sigma_left_in": float(np.nanmax(
                            np.abs(left_in[:, c] - plain[:, c]) / sigma))}
        out[f"{k:g}"] = res
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--factors", default="1,2,5,60")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    factors = [float(f) for f in args.factors.split(",")]
    figures = {"real": real_files(factors, args.seed),
               "labels": label_shifts(args.n, args.epochs, [5.0, 60.0], args.seed),
               "survey_stars": args.n, "epochs": args.epochs}
    run = os.path.join(CACHE, figures["labels"]["run"])
    report("spikes", figures, recipe=run_recipe(run))


if __name__ == "__main__":
    main()
