"""Why can a default ``fit`` leave the M dwarfs and YSOs with a Teff offset in their own training
split? Several default fits of one survey, each taken apart.

For each fit (``--seeds``, one process each, one after the other) it records:

* ``groups``: Table 3 per split (train, dev, test) and group (Full, Payne, MStar, YSO): scatter
  and bias of the plain predictions, as ``fit`` tabulates them;
* ``conditions``: the Teff, log g and [Fe/H] bias of each split and group under the conditions
  the network was trained in, beside the plain one: ``dropout`` (the mean of ``--passes`` passes
  with dropout on), ``noise`` (the mean over ``--passes`` draws of the training's noise
  augmentation, dropout off) and ``train_mode`` (both, as every training step sees a star). A
  bias that vanishes in ``train_mode`` was fitted: the network is unbiased where it was trained
  and the offset comes from the difference between training and inference;
* ``trace``: after every epoch of pretraining and of each fine-tuning round, the dev loss and the
  plain Teff bias of the training split's M dwarfs, YSOs and (a sample of) Payne stars, so that
  one sees how far that bias wanders from epoch to epoch and which epoch the stopping rule kept;
* the wall time of each fit and the load average (1 min) before and after it.

    python bench/cool_bias.py [--n 2000] [--seed 23] [--seeds 0 1 2] [--set field=value ...]
        [--tag NAME]

The full-size measurement: ``python bench/cool_bias.py --n 6000 --seeds 0 1 2`` (three default
fits of the 6,000-star survey of bench/time_to_accuracy.py). Each fit's figures are kept under
.bench/ (``cool_<n>_s<seed>_r<recipe seed>[_<tag>].json``): a call that stopped part way resumes
with the fits it lacks; delete those files to measure again. ``--posthoc`` takes the runs of an
earlier call with the same ``--tag``, made without the last-layer refit (the default), and fits
their last layer again (``apnet_tf.training.last_layer``): Table 3 per split and group before and
after. Fits that end with the refit: ``--set refit_last_layer=true --tag NAME``.
``--finetune-from TAG`` fine-tunes copies of the pretrained networks of an earlier call (its
``--tag``) with this call's recipe: fine-tuning variants compared on the same pretraining, at the
cost of the fine-tuning alone (``seconds`` is then the fine-tuning's wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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

#: Payne training stars whose Teff bias the trace follows (all M dwarfs and YSOs are followed).
TRACE_PAYNE = 400


def load_stars(records: str) -> dict[str, np.ndarray]:
    """Every labelled record: flux, err, bad (N, 8575), labels (N, 3), category, split (N,)."""
    from apnet_tf.data.dataset import make_dataset

    parts: dict[str, list] = {k: [] for k in ("flux", "err", "bad", "category", "split",
                                              "labels")}
    for ex, y in make_dataset(records, splits=list(SPLITS), batch_size=512, labeled_only=True,
                              features=("flux", "err", "bad", "category", "split")):
        for k in ("flux", "err", "bad"):
            parts[k].append(ex[k].numpy())
        for k in ("category", "split"):
            parts[k].append(ex[k].numpy().astype(str))
        parts["labels"].append(y.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def predict(model, flux: np.ndarray, training: bool = False, noise=None, seed: int = 0,
            batch: int = 256) -> np.ndarray:
    """The model over ``flux`` (N, 8575): plain, with dropout on (``training``) and/or with one
    draw of the training's noise (``noise``: the per-pixel sigma (N, 8575)); (N, 3)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    out = []
    for lo in range(0, len(flux), batch):
        x = flux[lo:lo + batch]
        if noise is not None:
            x = x + rng.standard_normal(x.shape).astype(np.float32) * noise[lo:lo + batch]
        out.append(model(tf.constant(x), training=training).numpy())
    return np.concatenate(out)


def group_table(pred: np.ndarray, stars: dict, stats=("scatter", "bias")) -> dict:
    """{split: {group: {stat: [teff, logg, fe_h]}}} over present labels."""
    fns = {"scatter": np.std, "bias": np.mean}
    out = {}
    for split in SPLITS:
        out[split] = {}
        for group, cats in GROUPS.items():
            sel = (stars["split"] == split) & np.isin(stars["category"], cats)
            r = pred[sel] - stars["labels"][sel]
            out[split][group] = {s: [round(float(fns[s](c[np.isfinite(c)])), 5)
                                     for c in r.T] for s in stats}
    return out


def conditions(model, stars: dict, passes: int) -> dict:
    """The bias per split and group under plain, dropout, noise and train_mode inference."""
    import tensorflow as tf

    from apnet_tf.model.uncertainty import noise_scale

    sigma = np.concatenate([noise_scale(tf.constant(stars["err"][i:i + 512]),
                                        tf.constant(stars["bad"][i:i + 512])).numpy()
                            for i in range(0, len(stars["err"]), 512)])
    flux = stars["flux"]
    preds = {"plain": predict(model, flux)}
    for name, training, noise in (("dropout", True, None), ("noise", False, sigma),
                                  ("train_mode", True, sigma)):
        tf.random.set_seed(1)
        preds[name] = np.mean([predict(model, flux, training, noise, seed=k)
                               for k in range(passes)], axis=0)
    return {name: group_table(p, stars, ("bias",)) for name, p in preds.items()}


class Tracer:
    """A Keras callback source: after every epoch, the dev loss and the plain Teff bias of the
    followed training stars per category (``rows``)."""

    def __init__(self, stars: dict):
        train = np.flatnonzero((stars["split"] == "train") & np.isfinite(stars["labels"][:, 0]))
        payne = train[stars["category"][train] == "payne"][:TRACE_PAYNE]
        keep = np.concatenate([payne, train[stars["category"][train] != "payne"]])
        self.flux, self.teff = stars["flux"][keep], stars["labels"][keep, 0]
        self.category = stars["category"][keep]
        self.rows: list[dict] = []

    def callback(self, stage: str):
        import keras

        tracer = self

        class Trace(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                pred = predict(self.model, tracer.flux)[:, 0]
                row = {"stage": stage, "epoch": epoch + 1,
                       "val_loss": round(float((logs or {}).get("val_loss", np.nan)), 6),
                       "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))}
                for cat in ("payne", "mstar", "yso"):
                    sel = tracer.category == cat
                    row[f"teff_bias_{cat}"] = round(float(np.mean(pred[sel] - tracer.teff[sel])),
                                                    2)
                tracer.rows.append(row)

        return Trace()


def worker(records: str, run_dir: str, out: str, overrides: list[str], passes: int,
           stage: str = "all") -> None:
    """One traced default fit (or its ``stage``) and its diagnosis, written to ``out`` (JSON)."""
    import keras

    from apnet_tf import workflows
    from apnet_tf.training import fitting
    from apnet_tf.training.recipes import Recipe, get_recipe

    stars = load_stars(records)
    tracer = Tracer(stars)
    reporter = fitting._Run.reporter

    class Both(keras.callbacks.Callback):  # the fit's own reporter, then the trace
        def __init__(self, parts):
            super().__init__()
            self.parts = parts

        def set_model(self, model):
            super().set_model(model)
            for part in self.parts:
                part.set_model(model)

        def on_epoch_end(self, epoch, logs=None):
            for part in self.parts:
                part.on_epoch_end(epoch, logs)

    fitting._Run.reporter = lambda run, stage: Both([reporter(run, stage),
                                                     tracer.callback(stage)])
    recipe = get_recipe("default", **parse_overrides(Recipe(), overrides))
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    res = workflows.fit(records, run_dir, stage=stage, recipe=recipe, overwrite=stage == "all")
    seconds = time.perf_counter() - t
    load_after = os.getloadavg()[0]
    model = keras.models.load_model(os.path.join(run_dir, "best.keras"))
    result = {"seconds": round(seconds, 1), "load_before": round(load_before, 2),
              "load_after": round(load_after, 2), "epochs": res.epochs,
              "rounds": res.rounds, "overrides": overrides, "stage": stage,
              "last_layer": getattr(res, "last_layer", None),
              "groups": group_table(predict(model, stars["flux"]), stars),
              "conditions": conditions(model, stars, passes), "trace": tracer.rows,
              "trace_summary": trace_summary(tracer.rows, stars,
                                             float(model.get_layer("labels").std[0]))}
    with open(out, "w") as f:
        json.dump(result, f, indent=1, default=float)


def trace_summary(rows: list[dict], stars: dict, std_teff: float, offset: float = 35.0) -> dict:
    """What the stopping rule can see: over the fine-tuning epochs, the standard deviation of
    the training stars' Teff bias per category, and the median change of the dev loss from one
    epoch to the next, beside the change of the dev loss that an ``offset`` (K) of every dev M
    dwarf and YSO would make (their share of dev's labels times (offset / std)^2)."""
    tune = [r for r in rows if r["stage"] == "finetune"]
    steps = [abs(b["val_loss"] - a["val_loss"]) for a, b in zip(tune, tune[1:])
             if b["epoch"] == a["epoch"] + 1]
    dev = stars["split"] == "dev"
    labels = np.isfinite(stars["labels"][dev]).sum()
    rare = np.isin(stars["category"][dev], ["mstar", "yso"]) & np.isfinite(
        stars["labels"][dev, 0])
    return {"finetune_epochs": len(tune),
            **{f"teff_bias_sd_{c}": round(float(np.std([r[f"teff_bias_{c}"] for r in tune])), 1)
               for c in ("payne", "mstar", "yso")},
            "median_epoch_to_epoch_dev_loss_change": float(np.median(steps)) if steps else None,
            f"dev_loss_change_of_{offset:g}K_rare_offset":
                float(rare.sum() * (offset / std_teff) ** 2 / labels)}


def posthoc(records: str, run_dir: str) -> dict:
    """A run trained without the last-layer refit, before and after ``refit_last_layer``:
    Table 3 per split and group of the plain predictions, and the refit's own record."""
    import keras

    import apnet_tf.model.network  # noqa: F401  (registers the package's layers)
    from apnet_tf.training.last_layer import refit_last_layer

    stars = load_stars(records)
    model = keras.models.load_model(os.path.join(run_dir, "best.keras"))
    before = group_table(predict(model, stars["flux"]), stars)
    t = time.perf_counter()
    info = refit_last_layer(model, records)
    seconds = time.perf_counter() - t
    return {"run": run_dir, "before": before,
            "after": group_table(predict(model, stars["flux"]), stars),
            "refit": info, "refit_seconds": round(seconds, 1),
            "load": round(os.getloadavg()[0], 2)}


def run_folder(n: int, survey_seed: int, recipe_seed: int, tag: str | None) -> str:
    """The cached run folder of one fit: ``.bench/cool_<n>_s<seed>_r<recipe seed>[_<tag>]``."""
    return os.path.join(CACHE, f"cool_{n}_s{survey_seed}_r{recipe_seed}"
                        + (f"_{tag}" if tag else ""))


def spread(fits: list[dict]) -> dict:
    """Min, mean and max over the fits of each split/group/stat/target of ``groups``."""
    out = {}
    for split in SPLITS:
        for group in GROUPS:
            for stat in ("scatter", "bias"):
                v = np.array([f["groups"][split][group][stat] for f in fits])
                out[f"{split} {group} {stat}"] = {
                    "min": v.min(0).round(4).tolist(), "mean": v.mean(0).round(4).tolist(),
                    "max": v.max(0).round(4).tolist()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=23, help="the survey's seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="the recipe seed of each fit")
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides, field=value")
    ap.add_argument("--passes", type=int, default=10, help="passes per stochastic condition")
    ap.add_argument("--posthoc", action="store_true",
                    help="refit the last layer of the runs of an earlier call (same --tag)")
    ap.add_argument("--finetune-from", metavar="TAG",
                    help="fine-tune copies of the pretrained networks of the call with this --tag")
    ap.add_argument("--worker", nargs=3, metavar=("RECORDS", "RUN_DIR", "OUT"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--stage", default="all", help=argparse.SUPPRESS)
    add_tag(ap)
    args = ap.parse_args()
    if args.worker:
        return worker(*args.worker, args.set, args.passes, args.stage)

    if args.finetune_from is not None:  # its copies replace the runs of this call's --tag
        if not args.tag or args.tag == args.finetune_from:
            ap.error("--finetune-from needs a --tag of its own (the runs it copies stay)")
        for s in args.seeds:
            source = run_folder(args.n, args.seed, s, args.finetune_from)
            if not os.path.exists(os.path.join(source, "pretrained.keras")):
                ap.error(f"--finetune-from {args.finetune_from}: no pretrained network in {source}")
    _, records = survey_records(args.n, args.seed)
    fits, recipe = [], None
    for s in args.seeds:
        run_dir = run_folder(args.n, args.seed, s, args.tag)
        out = run_dir + ".json"
        if args.posthoc:
            recipe = recipe or run_recipe(run_dir)
            fits.append({"recipe_seed": s, **posthoc(records, run_dir)})
            continue
        if not os.path.exists(out):  # a fit measured before is reused: the script resumes
            stage = "all"
            if args.finetune_from is not None:
                stage = "finetune"
                source = run_folder(args.n, args.seed, s, args.finetune_from)
                shutil.rmtree(run_dir, ignore_errors=True)  # a fine-tuning cut short, redone
                shutil.copytree(source, run_dir, ignore=shutil.ignore_patterns("*.lock"))
            subprocess.run([sys.executable, os.path.abspath(__file__), "--passes",
                            str(args.passes), "--stage", stage, "--worker", records, run_dir,
                            out, "--set", *args.set, f"seed={s}"], check=True)
        # the first fit's recipe (the fits differ in their seed), read once it has trained
        recipe = recipe or run_recipe(run_dir)
        with open(out) as f:
            fits.append({"recipe_seed": s, **json.load(f)})
        if "trace_summary" not in fits[-1]:  # a fit recorded before the summary existed
            stars = load_stars(records)
            with open(os.path.join(run_dir, "normalization.json")) as f:
                std_teff = json.load(f)["std"][0]
            fits[-1]["trace_summary"] = trace_summary(fits[-1]["trace"], stars, std_teff)
    if args.posthoc:
        report("cool_bias", {"n_stars": args.n, "survey_seed": args.seed, "posthoc": fits},
               f"{args.tag}-posthoc" if args.tag else "posthoc", recipe=recipe)
        return
    report("cool_bias", {"n_stars": args.n, "survey_seed": args.seed, "overrides": args.set,
                         "fits": fits, "spread": spread(fits)}, args.tag, recipe=recipe)


if __name__ == "__main__":
    main()
