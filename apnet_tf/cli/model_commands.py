"""The ``apnet-tf`` commands that train, run, check and export the network: fit, demo, infer,
calibrate, evaluate, export and import-torch. Each parses its options, calls library functions
and prints their results."""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Annotated, Optional

import typer

from apnet_tf.cli import options as opt
from apnet_tf.cli.panels import ADVANCED
from apnet_tf.cli.support import (
    console,
    fit_printers,
    float_triple,
    friendly,
    import_tensorflow,
    int_list,
    notice,
    one_line_errors,
    out,
    progress_bar,
    renamed_choice,
    require_options,
    step_bars,
    with_extra_paths,
    word_list,
)
from apnet_tf.constants import (
    CALIBRATION_MC_DRAWS,
    CALIBRATION_STARS_PER_STRATUM,
    TORCH_MISSING,
)
from apnet_tf.errors import ApnetError
from apnet_tf.wording import counted

__all__ = ["fit_cmd", "demo", "infer", "calibrate", "evaluate", "export", "import_torch_cmd"]


@one_line_errors
def fit_cmd(
        ctx: typer.Context,
        records: opt.Records = None,
        out_dir: opt.RunOut = None,
        recipe: opt.RecipeSources = None,
        show_recipe: opt.ShowRecipe = False,
        stage: opt.Stage = "all",
        arch: opt.Arch = None,
        epochs: opt.Epochs = None,
        seed: opt.RecipeSeed = None,
        resume: opt.Resume = False,
        overwrite: opt.OverwriteRun = False,
        optimizer: opt.Optimizer = None,
        learning_rate: opt.LearningRate = None,
        momentum: opt.Momentum = None,
        batch_size: opt.TrainBatchSize = None,
        dropout: opt.Dropout = None,
        input_scaling: opt.InputScaling = None,
        initializer: opt.Initializer = None,
        noise_augment: opt.NoiseAugment = None,
        patience: opt.Patience = None,
        lr_plateau_patience: opt.LrPlateauPatience = None,
        finetune_learning_rate: opt.FinetuneLearningRate = None,
        finetune_fraction: opt.FinetuneFraction = None,
        finetune_patience: opt.FinetunePatience = None,
        finetune_max_rounds: opt.FinetuneMaxRounds = None,
        finetune_dev_tolerance: opt.FinetuneDevTolerance = None,
        strategy: opt.Strategy = "default",
        precision: opt.Precision = None,
        refit_last_layer: opt.RefitLastLayer = None,
        deterministic: opt.Deterministic = None,
        min_improvement: opt.MinImprovement = None,
        ema_momentum: opt.EmaMomentum = None,
) -> None:
    """Train APOGEE Net: pretrain on all stars, then the paper's rolling 5% Payne fine-tuning.

    --arch anet2 trains APOGEE Net II's two-input layout on flux and photometry, --arch anet3
    APOGEE Net III's layout on flux."""
    flags = locals()  # each Recipe field is the flag of its name (test_every_recipe_field_...)
    rec, made_of = _fit_recipe(recipe or ["default"], flags)
    if show_recipe:
        from apnet_tf.training.recipe_files import recipe_toml

        out.print(recipe_toml(rec, made_of), end="")
        return
    require_options(ctx, {"--records": records, "--out": out_dir})
    import_tensorflow()
    from apnet_tf.training.inputs import refuse_unused_flags
    from apnet_tf.workflows import fit

    refuse_unused_flags(arch, stage, out_dir, resume, flags)  # flags: each field's value or None
    with step_bars() as bars:
        bars("fit", 0, None)
        on_epoch, on_round = fit_printers(functools.partial(bars, "fit"))
        result = fit(records, out_dir, stage=stage, recipe=rec, resume=resume,
                     strategy=strategy, overwrite=overwrite, on_epoch=on_epoch,
                     on_round=on_round, on_progress=functools.partial(bars, "calibrate"),
                     arch=arch)
    _print_fit(result, out_dir)


def _fit_recipe(sources: list[str], flags: dict) -> tuple:
    """(the recipe that ``sources`` and ``fit``'s recipe flags make, what it was made of: the
    sources and the flags given). A flag of a recipe-file-only field gets a one-line note."""
    from apnet_tf.training.recipe_files import layered_recipe
    from apnet_tf.training.recipes import FILE_ONLY_FIELDS, Recipe, flag_name

    # a recipe-file-only field that never had a flag has none here
    given = {f.name: flags[f.name] for f in dataclasses.fields(Recipe)
             if flags.get(f.name) is not None}
    notice("note", [f"{flag_name(k)} is now set in a recipe file ({k} = {given[k]!r} in a TOML "
                    "file for --recipe); the flag is accepted until the next release"
                    for k in FILE_ONLY_FIELDS if k in given])
    made_of = list(sources) + [
        flag_name(k) if v is True else f"--no-{flag_name(k)[2:]}" if v is False
        else f"{flag_name(k)} {v}" for k, v in given.items()]
    return layered_recipe(sources, **given), made_of


def _print_fit(result, out_dir: str) -> None:
    """What ``fit`` prints once it is done: notes, the best model, Table 3, the calibration."""
    notice("note", result.notes)
    if not result.chief:  # the chief writes the run; this worker's copy was temporary
        out.print(f"worker {_task_index()} of the multi-worker run: trained {_epochs(result)} "
                  "in step with the chief, which writes the run folder, its tables and its "
                  "calibration; this worker wrote nothing")
        return
    out.print(f"best model: {os.path.join(out_dir, 'best.keras')}")
    _print_table3(result.table3, "")
    if result.calibration is not None:
        cal = result.calibration
        out.print(f"sigma calibration: {os.path.join(out_dir, 'calibration.json')}; dev 1-sigma "
                  f"coverage raw {_coverages(cal.coverage_dev_raw, 2)} -> calibrated "
                  f"{_coverages(cal.coverage_dev_held_out, 2)} (each half of dev calibrated "
                  "on the other)")


def _task_index() -> str:
    """This worker's task in TF_CONFIG, e.g. "1" (its type too when it is not a worker)."""
    import json

    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    kind, index = task.get("type", "worker"), task.get("index", "?")
    return f"{index}" if kind == "worker" else f"{kind} {index}"


def _epochs(result) -> str:
    """What a fit trained, e.g. "pretrain 1 epoch, finetune 2 epochs"."""
    done = [(stage, n) for stage, n in (result.epochs or {}).items() if n]
    return ", ".join(f"{stage} {n} epoch{'s' * (n != 1)}" for stage, n in done) or "no epoch"


def _coverages(values, digits: int) -> str:
    """Coverages as printed: "0.67 0.68 n/a" (n/a where too few stars gave none)."""
    return " ".join("n/a" if v is None or v != v else f"{v:.{digits}f}"
                    for v in (values or [None] * 3))


@friendly
def demo(out_dir: Annotated[str, typer.Option("--out", help="Folder for everything the demo makes")] = "demo_out",
         n: Annotated[int, typer.Option(help="Stars in the synthetic survey")] = 1500,
         epochs: Annotated[int, typer.Option(help="Most epochs per stage or round")] = 30,
         mc: opt.Mc = 30,
         seed: opt.Seed = 0) -> None:
    """The main job end to end on the embedded synthetic survey.

    synth -> make-records -> fit (pretrain + rolling Payne fine-tuning) -> calibrate ->
    infer (catalog with uncertainties) -> evaluate (Tables 2 and 3, coverage, PNG plots).
    Re-running it reuses the spectra, records and a finished run, and the catalog and the
    evaluation when their inputs (run, records, --mc, --seed) are unchanged.
    """
    from apnet_tf.workflows import run_demo

    with step_bars() as bars:
        on_epoch, on_round = fit_printers(lambda done, total: bars("fit", done, total))
        res = run_demo(out_dir, n=n, epochs=epochs, mc=mc, seed=seed, on_progress=bars,
                       on_epoch=on_epoch, on_round=on_round)
    if res.reused:
        unchanged = {"catalog", "evaluation"} & set(res.reused)
        out.print(f"reused: {', '.join(res.reused)}" + (" (inputs unchanged)" if unchanged else ""))
    out.print(f"run folder:  {res.run_dir}")
    out.print(f"catalog:     {res.catalog_path} ({len(res.catalog)} stars, calibrated sigmas)")
    out.print(f"evaluation:  {res.evaluation_dir} (tables, coverage, PNG plots)")
    _print_table3(res.evaluation["table3"], " (synthetic survey)")
    out.print("1-sigma coverage on the test split (target 0.683):")
    out.print(res.evaluation["coverage"].xs("test", level="split").to_string(
        float_format=lambda v: f"{v:.3f}"))


def _print_table3(table3, what: str) -> None:
    """Table 3 (scatter, bias, RMS per group and target x split) as fit, demo and evaluate
    print it; ``what`` qualifies the title."""
    out.print(f"Table 3, scatter between labels and predictions{what}:")
    out.print(table3.to_string(float_format=lambda v: f"{v:.4g}"))


@friendly
def infer(
        ctx: typer.Context,
        model: opt.InferModel,
        out_path: opt.CatalogOut,
        spectra: opt.InferSpectra = None,
        table: opt.Table = None,
        root: opt.Root = None,
        photometry: opt.Photometry = None,
        mc: opt.InferMc = None,
        seed: opt.InferSeed = None,
        batch_size: opt.InferBatchSize = 256,
        engine: opt.Engine = "local",
        ray_address: opt.RayAddress = None,
        workers: opt.Workers = None,
        precision: opt.InferPrecision = "float32",
        calibrated: opt.Calibrated = False,
        raw_sigma: opt.RawSigma = False,
        mc_dropout: opt.McDropout = False,
        mask_bits: opt.InferMaskBits = None,
        mc_bad_pixels: opt.McBadPixels = "noise",
) -> None:
    """Predict Teff, log g and [Fe/H] with uncertainties and write a catalog.

    Sigmas are calibrated (shape fitted on the train split, level on dev) whenever the model
    carries a calibration.json (fit writes one); --raw-sigma gives the paper's raw Monte Carlo sigma. The catalog header
    (SIGMA, SIGCAL, MC, MCSEED) says which it holds.

    Finished batches are kept in OUT.parts/ until the catalog is written, so re-running a killed
    command resumes it (only if the model's content, the inputs and every option are the same).
    """
    from apnet_tf.inference.job import run_infer
    from apnet_tf.inference.settings import InferenceSettings
    from apnet_tf.io.catalog_counts import catalog_counts, count_phrases

    if calibrated and raw_sigma:
        raise ApnetError("--calibrated and --raw-sigma exclude each other")
    calibrated = False if raw_sigma else True if calibrated else False if mc_dropout else None
    spectra = with_extra_paths(spectra or [], ctx)
    bits = None if mask_bits is None else int_list(mask_bits, "--mask-bits")
    settings = InferenceSettings(mc=mc, batch_size=batch_size, calibrated=calibrated,
                                 mc_dropout=mc_dropout, seed=seed, mask_bits=bits,
                                 precision=precision, mc_bad_pixels=mc_bad_pixels)
    with progress_bar("infer") as update:
        result = run_infer(model, out_path, spectra, settings, table=table, root=root,
                           engine=engine, ray_address=ray_address, workers=workers,
                           on_progress=update, photometry=photometry)
    notice("precision", [result.precision] if result.precision else [])
    notice("note", result.notes)
    notice("skipped", result.failures)
    cat = result.catalog
    out.print(f"wrote {counted(len(cat), 'star')} to {out_path} ("
              f"{', '.join(count_phrases(catalog_counts(cat)))}; sigma: {cat.meta['SIGMA']})")
    if result.failures:
        console.print(f"[yellow]{counted(len(result.failures), 'input')} skipped[/yellow]")
        raise typer.Exit(2)


@friendly
def calibrate(
        model: Annotated[str, typer.Option(help="Run folder (calibration.json is written there)")],
        records: Annotated[str, typer.Option(help="Record folder with a dev split")],
        mc: opt.Mc = CALIBRATION_MC_DRAWS,
        seed: opt.Seed = 0,
        stars_per_stratum: opt.StarsPerStratum = CALIBRATION_STARS_PER_STRATUM,
) -> None:
    """Fit the sigma calibration again (fit already does this once).

    Noise factor and floor on the raw Monte Carlo sigma per Kiel-diagram region of the
    prediction, a factor per S/N tercile: their shape fitted on the train split, their level on
    dev, each on a seeded, stratified subset of its stars (--seed, --stars-per-stratum).
    """
    from apnet_tf.calibration.fit import calibrate as run_calibrate

    with progress_bar("calibrate") as update:
        cal = run_calibrate(model, records, mc=mc, seed=seed, on_progress=update,
                            per_stratum=stars_per_stratum)
    out.print(f"wrote {os.path.join(model, 'calibration.json')} ({cal.dev_stars} dev stars)")
    out.print("dev 1-sigma coverage, raw -> calibrated (each half of dev calibrated on the "
              "other):")
    for name, raw, c in zip(("teff", "logg", "fe_h"), cal.coverage_dev_raw,
                            cal.coverage_dev_held_out or [None] * 3):
        out.print(f"  {name:5s} {_coverages([raw], 3)} -> {_coverages([c], 3)}")


@friendly
def evaluate(
        model: opt.ModelFile,
        records: Annotated[str, typer.Option(help="Labelled record folder")],
        out_dir: Annotated[str, typer.Option("--out", help="Folder for tables and plots")],
        mc: opt.Mc = 100,
        seed: opt.Seed = 0,
        splits: Annotated[str, typer.Option(help="Comma-separated splits to evaluate")] = "train,dev,test",
) -> None:
    """Tables 2 and 3, 1-sigma coverage and PNG plots for a model on a record set."""
    from apnet_tf.evaluation.tables import evaluate as run_evaluate

    chosen = word_list(splits)
    unknown = set(chosen) - {"train", "dev", "test"}
    if unknown or not chosen:
        raise ApnetError(f"--splits: expected some of train,dev,test, got {splits!r}")
    with progress_bar("evaluate") as update:
        res = run_evaluate(model, records, out_dir, mc=mc, seed=seed, splits=chosen,
                           on_progress=update)
    out.print("Table 2, combined standardised MSE:")
    out.print(res["table2"].to_string(float_format=lambda v: f"{v:.4g}"))
    _print_table3(res["table3"], "")
    out.print("1-sigma coverage (target 0.683):")
    out.print(res["coverage"].to_string(float_format=lambda v: f"{v:.3f}"))
    out.print(f"wrote {len(res['files'])} files to {out_dir}")


@friendly
def export(
        model: opt.ModelFile,
        out_dir: Annotated[str, typer.Option("--out", help="e.g. saved_models/apogee_net")],
        version: Annotated[Optional[int], typer.Option(
            help="Version folder  [default: the next free number]")] = None,
        tflite: Annotated[str, typer.Option(
            help="Comma-separated TFLite variants of float32,float16,int8,int8-weights "
                 "('' for none)")] = "float32,float16,int8-weights",
        mc: Annotated[Optional[int], typer.Option(help="Monte Carlo draws per star in predict_with_uncertainty  [default: 100; APOGEE Net III and BOSS Net 20]", rich_help_panel=ADVANCED)] = None,
) -> None:
    """Export a SavedModel for TF Serving (three signatures) and TFLite variants for LiteRT."""
    from apnet_tf.export.model_export import export_model

    variants = list(word_list(tflite))
    meta = export_model(model, out_dir, version=version, tflite=variants, mc=mc)
    out.print(f"SavedModel: {os.path.join(out_dir, str(meta['version']))} "
              "(signatures serving_default, monte_carlo, predict_with_uncertainty)")
    for variant, info in meta["tflite"].items():
        out.print(f"TFLite {variant:12s} {os.path.join(out_dir, info['file'])} "
                  f"({info['bytes'] / 2**20:.1f} MiB)")


@friendly
def import_torch_cmd(
        state_dict: Annotated[str, typer.Argument(metavar="STATE_DICT", help="PyTorch state_dict (.pt): APOGEE Net I (astra), Net II (ApogeeNet2's model.pt), one apnet-tf wrote (save_torch, with its STATE_DICT.json); or APOGEE Net III / BOSS Net as a .pt file or their authors' folder of model_chunk_* files (BOSSNet's model_apogee/, model_boss/)")],
        out_dir: Annotated[str, typer.Option("--out", help="Run folder to write")],
        arch: Annotated[Optional[str], typer.Option("--arch", help="anet1 (APOGEE Net I), anet2 (APOGEE Net II, flux + photometry), anet3 (APOGEE Net III, SDSS's network of apStar spectra), bossnet (BOSS Net, BOSS spec files, with RV) or apnet (this package's own layout: the paper's rounded Table 1 statistics in Teff, log g, [Fe/H] order; wrong for the published Net I weights); must be what the file's keys and shapes are  [default: the sidecar STATE_DICT.json's arch if there is one (save_torch writes it), else the layout the keys and shapes say]")] = None,
        convention: Annotated[Optional[str], typer.Option("--convention", help="anet3 and bossnet: whose pipeline around the network, astra (SDSS's, which made the DR19 catalogs) or hutchresearch (the authors' repository)  [default: astra]")] = None,
        force_arch: Annotated[bool, typer.Option("--force-arch", help="Read the file as --arch although its keys and shapes are those of a published network (your own PyTorch weights of Net I's layout, read as --arch apnet)")] = False,
        mean: Annotated[Optional[str], typer.Option(
            help="apnet only: target means teff,logg,fe_h (K, dex, dex)  [default: paper Table 1]", rich_help_panel=ADVANCED)] = None,
        std: Annotated[Optional[str], typer.Option(
            help="apnet only: target stds teff,logg,fe_h (K, dex, dex)  [default: paper Table 1]", rich_help_panel=ADVANCED)] = None,
        overwrite: opt.OverwriteRun = False,
) -> None:
    """Load published PyTorch weights into a Keras run folder; run.json records the network's
    conventions (input, output order, constants, Monte Carlo), which infer, export, evaluate
    and calibrate apply. The layout is recognised by the file's keys and shapes, every one of
    which must be known. A file written by save_torch has a sidecar STATE_DICT.json (arch,
    input scaling, target statistics), which is read, so the import gives the run's numbers."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # said at once, before TensorFlow loads
        raise ApnetError(TORCH_MISSING)
    from apnet_tf.model.published import read_conventions
    from apnet_tf.model.torch_weights import import_torch, read_sidecar, sidecar_path

    arch = renamed_choice(arch, "--arch")
    m = None if mean is None else float_triple(mean, "--mean")
    s = None if std is None else float_triple(std, "--std")
    path = import_torch(state_dict, out_dir, m, s, overwrite=overwrite, arch=arch,
                        convention=convention, force_arch=force_arch)
    side = None if os.path.isdir(state_dict) else read_sidecar(state_dict)
    conv = read_conventions(out_dir) or {}
    if conv.get("convention"):
        out.print(f"wrote {path} (--arch {conv['arch']}, {conv['convention']} conventions)")
    elif side is None:
        out.print(f"wrote {path} (--arch {conv.get('arch', 'apnet')})")
    else:
        out.print(f"wrote {path} (--arch {side['arch']}, input scaling "
                  f"{side['input_scaling']}, from {sidecar_path(state_dict)})")
