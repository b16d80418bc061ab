"""The ``apnet-tf`` command line. It parses arguments and calls library functions, nothing more."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import Annotated, Optional

# TensorFlow's C++ start-up chatter is not for users of a command line.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .errors import ApnetError

# rich_markup_mode=None: plain help, so square brackets in help texts print as written.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="APOGEE Net in TensorFlow: from apStar FITS files to a stellar-parameter "
                       "catalog.")
console = Console(stderr=True)
out = Console(soft_wrap=True, markup=False, highlight=False)  # results, printed as written


def _import_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up log lines (oneDNN, CUDA probing) silenced.

    Called when a command runs, never at import time, so that ``--help`` prints in well under
    a second.
    """
    if "tensorflow" in sys.modules:
        return
    from .quiet import native_stderr_silenced

    with native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()


def _friendly(fn):
    """Import TensorFlow quietly, then run the command; turn ApnetError into one red line on
    stderr and exit code 1, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            _import_tensorflow()
            return fn(*args, **kwargs)
        except ApnetError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        except OSError as exc:  # disk full, permissions, a folder that is a file, ...
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            console.print(f"[red]error:[/red] {escape(where + str(exc.strerror or exc))}", highlight=False,
                          soft_wrap=True)
            raise typer.Exit(1)
        except KeyboardInterrupt:
            console.print("[red]interrupted[/red]; re-run the same command to resume")
            raise typer.Exit(130)
    return wrapper


@contextlib.contextmanager
def progress_bar(description: str):
    """Yield an ``on_progress(done, total)`` callback that drives a rich progress bar."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=False,
                  disable=not sys.stderr.isatty() and os.environ.get("APNET_PROGRESS") != "1",
                  ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@app.command()
@_friendly
def synth(out_dir: Annotated[str, typer.Option("--out", help="Folder for the FITS files and labels.csv")],
          n: Annotated[int, typer.Option("--n", help="Number of stars")] = 3000,
          seed: Annotated[int, typer.Option(help="Random seed")] = 0,
          overwrite: Annotated[bool, typer.Option(
              "--overwrite", help="Replace another survey in --out")] = False) -> None:
    """Write a synthetic survey of apStar-format FITS files plus labels.csv.

    Re-running the same command resumes it; a different survey in the same folder needs
    --overwrite, so old spectra are never mixed with new ones.
    """
    from .synth import make_survey

    with progress_bar("synth") as update:
        table = make_survey(out_dir, n, seed, on_progress=update, overwrite=overwrite)
    counts = table["CATEGORY"].value_counts().to_dict()
    out.print(f"wrote {len(table)} spectra and labels.csv to {out_dir} "
              f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")


#: Lets ``--spectra a.fits b.fits c.fits`` (a shell glob) pass several paths after one flag.
MANY_PATHS = {"allow_extra_args": True, "ignore_unknown_options": False}


@app.command("make-records", context_settings=MANY_PATHS)
@_friendly
def make_records_cmd(
        ctx: typer.Context,
        spectra: Annotated[list[str], typer.Option("--spectra", help="apStar files, folders or globs")],
        out_dir: Annotated[str, typer.Option(
            "--out", help="Output folder for shards and manifest.json: new, empty, or one "
                          "make-records wrote (re-running resumes it)")],
        labels: Annotated[Optional[str], typer.Option(help="Label table, CSV or FITS")] = None,
        shards: Annotated[Optional[int], typer.Option(
            help="Shards per split  [default: one per 1024 records]")] = None,
        compress: Annotated[bool, typer.Option("--compress", help="GZIP the records")] = False,
        mask_bits: Annotated[Optional[str], typer.Option(
            help="Comma-separated apStar PIXMASK bits that mark a pixel bad"
            "  [default: 0-6]")] = None,
) -> None:
    """Write sharded TFRecords and manifest.json from apStar files and a label table."""
    from .records import make_records
    from .spectra import DEFAULT_MASK_BITS

    bits = DEFAULT_MASK_BITS if mask_bits is None else _int_list(mask_bits, "--mask-bits")
    spectra = _with_extra_paths(spectra, ctx)
    with progress_bar("make-records") as update:
        result = make_records(spectra, out_dir, labels=labels, shards=shards, compress=compress,
                              mask_bits=bits, on_progress=update)
    for line in result.failures:
        console.print(f"[yellow]skipped:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)
    for line in result.report_lines:
        console.print(f"[yellow]note:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)
    counts = result.manifest["counts"]
    total = sum(sum(c.values()) for c in counts.values())
    out.print(f"wrote {total} records in {len(result.written_shards)} new shards "
              f"({len(result.skipped_shards)} already complete) to {out_dir}")
    for split, cats in counts.items():
        out.print(f"  {split:10s} " + "  ".join(f"{k} {v}" for k, v in sorted(cats.items())))
    stats = result.manifest["target_stats"]
    if stats["mean"][0] is not None:
        out.print("  train mean/std: " + "  ".join(
            f"{name} {m:.4g}/{s:.4g}" if s is not None else f"{name} {m:.4g}/-"
            for name, m, s in zip(result.manifest["targets"], stats["mean"], stats["std"])))
    if result.failures:
        console.print(f"[yellow]{len(result.failures)} file(s) skipped[/yellow]; the rest were "
                      "written")
        raise typer.Exit(2)


@app.command("fit")
@_friendly
def fit_cmd(
        records: Annotated[str, typer.Option(help="Record folder from make-records")],
        out_dir: Annotated[str, typer.Option(
            "--out", help="Run folder to write: new or empty, or see --overwrite, --resume")],
        stage: Annotated[str, typer.Option(help="pretrain, finetune or all")] = "all",
        recipe: Annotated[str, typer.Option(help="default, or paper (SGD lr 0.001 on raw flux)")] = "default",
        epochs: Annotated[Optional[int], typer.Option(
            help="Most epochs per stage or round; early stopping usually ends sooner"
            "  [default: 100]")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue a killed run")] = False,
        overwrite: Annotated[bool, typer.Option(
            "--overwrite", help="Replace the run already in --out (its files are deleted)")] = False,
        strategy: Annotated[str, typer.Option(help="default, mirrored or multiworker")] = "default",
        optimizer: Annotated[Optional[str], typer.Option(
            help="adam or sgd  [default: adam; sgd with --recipe paper]")] = None,
        learning_rate: Annotated[Optional[float], typer.Option(
            help="Learning rate of the first stage  [default: 0.001]")] = None,
        momentum: Annotated[Optional[float], typer.Option(help="SGD momentum  [default: 0]")] = None,
        batch_size: Annotated[Optional[int], typer.Option(
            help="Spectra per training batch  [default: 16; 128 with --recipe paper]")] = None,
        dropout: Annotated[Optional[float], typer.Option(
            help="Dropout rate, 0 to 1  [default: 0.1]")] = None,
        input_scaling: Annotated[Optional[str], typer.Option(
            help="none or mean  [default: mean; none with --recipe paper]")] = None,
        initializer: Annotated[Optional[str], typer.Option(
            help="Keras initializer name"
            "  [default: he_normal; glorot_uniform with --recipe paper]")] = None,
        patience: Annotated[Optional[int], typer.Option(
            help="Early-stopping patience (epochs)  [default: 5]")] = None,
        finetune_patience: Annotated[Optional[int], typer.Option(
            help="Rounds without mstar+yso improvement before fine-tuning ends"
            "  [default: 3]")] = None,
        finetune_fraction: Annotated[Optional[float], typer.Option(
            help="Fraction of Payne training stars drawn per round  [default: 0.05]")] = None,
        finetune_max_rounds: Annotated[Optional[int], typer.Option(
            help="Most fine-tuning rounds  [default: 20]")] = None,
        precision: Annotated[Optional[str], typer.Option(
            help="auto (bfloat16 where the hardware has it), float32 or mixed_bfloat16"
            "  [default: float32]")] = None,
        lr_plateau_patience: Annotated[Optional[int], typer.Option(
            help="Halve the learning rate after this many epochs without dev improvement; "
                 "0 = off  [default: 3; 0 with --recipe paper]")] = None,
        noise_augment: Annotated[Optional[bool], typer.Option(
            "--noise-augment/--no-noise-augment",
            help="Add fresh per-pixel noise (paper 3.5 scale) to the training spectra each "
                 "epoch  [default: on; off with --recipe paper]")] = None,
        finetune_learning_rate: Annotated[Optional[float], typer.Option(
            help="Learning rate at the start of each fine-tuning round"
                 "  [default: 0.0001; 0.001 with --recipe paper]")] = None,
        finetune_dev_tolerance: Annotated[Optional[float], typer.Option(
            help="A round may worsen the whole-dev loss by at most this fraction"
                 "  [default: 0.05]")] = None,
        deterministic: Annotated[Optional[bool], typer.Option(
            "--deterministic/--no-deterministic",
            help="TensorFlow op determinism: same seed, bit-identical weights (slower)"
                 "  [default: off]")] = None,
        seed: Annotated[Optional[int], typer.Option(help="Random seed  [default: 0]")] = None,
) -> None:
    """Train APOGEE Net: pretrain on all stars, then the paper's rolling 5% Payne fine-tuning."""
    from .training import get_recipe

    rec = get_recipe(recipe, epochs=epochs, optimizer=optimizer, learning_rate=learning_rate,
                     momentum=momentum, batch_size=batch_size, dropout=dropout,
                     input_scaling=input_scaling, initializer=initializer, patience=patience,
                     finetune_patience=finetune_patience, finetune_fraction=finetune_fraction,
                     finetune_max_rounds=finetune_max_rounds, precision=precision,
                     lr_plateau_patience=lr_plateau_patience, noise_augment=noise_augment,
                     finetune_learning_rate=finetune_learning_rate,
                     finetune_dev_tolerance=finetune_dev_tolerance, deterministic=deterministic,
                     seed=seed)
    result = _run_fit(records, out_dir, stage, rec, resume, strategy, overwrite)
    out.print(f"best model: {os.path.join(out_dir, 'best.keras')}")
    out.print("Table 3, scatter between labels and predictions:")
    out.print(result.table3.to_string(float_format=lambda v: f"{v:.4g}"))
    if result.calibration is not None:
        cal = result.calibration
        out.print(f"sigma calibration: {os.path.join(out_dir, 'calibration.json')}; dev 1-sigma "
                  f"coverage raw {' '.join(f'{c:.2f}' for c in cal.coverage_dev_raw)} -> "
                  f"calibrated {' '.join(f'{c:.2f}' for c in cal.coverage_dev_calibrated)}")


def _run_fit(records, out_dir, stage, rec, resume, strategy, overwrite=False):
    from .training import fit

    with progress_bar("fit") as update:
        state = {"n": 0}

        def on_epoch(stage_name, epoch, logs):
            state["n"] += 1
            update(state["n"], None)
            console.print(f"{stage_name} epoch {epoch}: standardised MSE, training "
                          f"{logs.get('loss', float('nan')):.4f}, dev "
                          f"{logs.get('val_loss', float('nan')):.4f}", highlight=False)

        def on_round(row):
            # what a round is compared with: the pretrained model's mstar+yso dev loss until a
            # round improves on it, then the best round's
            ref = "best round's" if state.get("kept") else "pretrained model's"
            verdict = (f"kept: below the {ref} {row['best_before']:.4f}" if row["improved"] else
                       f"not kept: the {ref} {row['best_before']:.4f} stays")
            state["kept"] = state.get("kept") or row["improved"]
            console.print(f"fine-tune round {row['round']} (seed {row['seed']}): "
                          f"{row['epochs']} epochs, mstar+yso dev loss "
                          f"{row['focus_dev_loss']:.4f}, {verdict}", highlight=False)

        return fit(records, out_dir, stage=stage, recipe=rec, resume=resume, strategy=strategy,
                   overwrite=overwrite,
                   on_epoch=on_epoch, on_round=on_round)


@app.command()
@_friendly
def demo(out_dir: Annotated[str, typer.Option("--out", help="Folder for everything the demo makes")] = "demo_out",
         n: Annotated[int, typer.Option(help="Stars in the synthetic survey")] = 1500,
         epochs: Annotated[int, typer.Option(help="Most epochs per stage or round")] = 30,
         mc: Annotated[int, typer.Option(help="Monte Carlo realizations per star")] = 30,
         seed: Annotated[int, typer.Option(help="Random seed")] = 0) -> None:
    """The main job end to end on the embedded synthetic survey.

    synth -> make-records -> fit (pretrain + rolling Payne fine-tuning) -> calibrate ->
    infer (catalog with uncertainties) -> evaluate (Tables 2 and 3, coverage, PNG plots).
    Re-running it reuses the spectra, records and a finished run.
    """
    from .calibration import calibrate as run_calibrate
    from .evaluation import evaluate as run_evaluate
    from .inference import load_model, predict_catalog, write_catalog
    from .records import make_records
    from .synth import make_survey
    from .training import get_recipe

    from .errors import require_at_least

    # every option is checked before the demo starts work
    recipe = get_recipe("default", epochs=epochs, seed=seed).validate()
    require_at_least(n, 1, "--n")
    require_at_least(mc, 2, "--mc")
    spectra_dir = os.path.join(out_dir, "spectra")
    records_dir = os.path.join(out_dir, "records")
    run_dir = os.path.join(out_dir, "run")
    if not os.path.exists(os.path.join(spectra_dir, "labels.csv")):
        with progress_bar("synth") as update:
            make_survey(spectra_dir, n, seed, on_progress=update)
    with progress_bar("make-records") as update:
        make_records([spectra_dir], records_dir, labels=os.path.join(spectra_dir, "labels.csv"),
                     on_progress=update)
    if not os.path.exists(os.path.join(run_dir, "table3.csv")):
        # an unfinished run of the demo's own is started again
        _run_fit(records_dir, run_dir, "all", recipe, False, "default", overwrite=True)
    if not os.path.exists(os.path.join(run_dir, "calibration.json")):  # fit calibrates
        run_calibrate(run_dir, records_dir, realizations=mc, seed=seed)
    with progress_bar("infer") as update:
        result = predict_catalog(load_model(run_dir), [records_dir], mc=mc, calibrated=True,
                                 seed=seed, on_progress=update)
    catalog = write_catalog(result.catalog, os.path.join(out_dir, "catalog.fits"))
    with progress_bar("evaluate") as update:
        res = run_evaluate(run_dir, records_dir, os.path.join(out_dir, "evaluation"),
                           realizations=mc, seed=seed, on_progress=update)
    out.print(f"run folder:  {run_dir}")
    out.print(f"catalog:     {catalog} ({len(result.catalog)} stars, calibrated sigmas)")
    out.print(f"evaluation:  {os.path.join(out_dir, 'evaluation')} (tables, coverage, PNG plots)")
    out.print("Table 3, scatter between labels and predictions (synthetic survey):")
    out.print(res["table3"].to_string(float_format=lambda v: f"{v:.4g}"))
    out.print("1-sigma coverage on the test split (target 0.683):")
    out.print(res["coverage"].xs("test", level="split").to_string(
        float_format=lambda v: f"{v:.3f}"))


@app.command("make-labels")
@_friendly
def make_labels_cmd(
        out_path: Annotated[str, typer.Option(
            "--out", help="Label table to write (CSV; an existing file is replaced, whole)")],
        payne: Annotated[Optional[str], typer.Option(help="Payne table: APOGEE_ID, TEFF, LOGG, FE_H")] = None,
        photometry: Annotated[Optional[str], typer.Option(
            help="Photometry: APOGEE_ID, J, H, K, G_PS1, R_PS1, PARALLAX, PARALLAX_ERROR [, FIELD]")] = None,
        yso: Annotated[Optional[str], typer.Option(help="YSO labels: APOGEE_ID, TEFF, LOGG, FE_H")] = None,
        gk_margin: Annotated[float, typer.Option(help="Widening of the g-K cut (mag)")] = 0.03,
        yso_fields: Annotated[Optional[str], typer.Option(
            help="Comma-separated APOGEE field patterns that go to the YSO route")] = None,
) -> None:
    """Build the training label table: Payne rule, M-dwarf photometric labels, YSO labels."""
    from .photometric import DEFAULT_YSO_FIELDS, make_labels

    fields = DEFAULT_YSO_FIELDS if yso_fields is None else tuple(
        f.strip() for f in yso_fields.split(",") if f.strip())
    result = make_labels(out_path, payne=payne, photometry=photometry, yso=yso,
                         gk_margin=gk_margin, yso_fields=fields)
    out.print(f"wrote {len(result.table)} labels to {out_path}")
    for key, value in result.counts.items():
        out.print(f"  {key:28s} {value}")


@app.command("yso-train")
@_friendly
def yso_train_cmd(
        isochrones: Annotated[list[str], typer.Option(
            help="PARSEC CMD isochrone table(s) (text or CSV); repeat to join Gaia and 2MASS+WISE files")],
        out_dir: Annotated[str, typer.Option("--out", help="Folder for network.keras and yso.json")],
        n_train: Annotated[int, typer.Option(help="Synthetic training stars (paper: ~42,000)")] = 42000,
        n_val: Annotated[int, typer.Option(help="Held-out synthetic stars for early stopping")] = 4000,
        epochs: Annotated[int, typer.Option(help="Most epochs")] = 200,
        patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs)")] = 12,
        extinction: Annotated[Optional[str], typer.Option(
            help="A_band/A_V overrides, e.g. G=0.83,BP=1.08 [default: Wang & Chen 2019]")] = None,
        noise: Annotated[float, typer.Option(help="Gaussian magnitude scatter (paper: none)")] = 0.0,
        age_spacing: Annotated[str, typer.Option(help="Ages uniform in linear Myr (paper) or log")] = "linear",
        seed: Annotated[int, typer.Option(help="Random seed")] = 0,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a network already in --out")] = False,
) -> None:
    """Train the paper's photometric YSO network (section 2.3) on synthetic isochrone stars."""
    from .isochrones import extinction_coefficients
    from .yso import OUTPUTS, yso_train

    if min(n_train, n_val, epochs, patience) < 1 or age_spacing not in ("linear", "log") \
            or not noise >= 0:
        raise ApnetError("--n-train, --n-val, --epochs, --patience must be >= 1, --noise >= 0, "
                         "--age-spacing linear or log")

    def report(epoch: int, logs: dict) -> None:
        out.print(f"epoch {epoch:3d}  loss {logs['loss']:.4f}  held-out {logs['val_loss']:.4f}")

    result = yso_train(isochrones, out_dir, overwrite=overwrite, n_train=n_train, n_val=n_val,
                       epochs=epochs, patience=patience,
                       coefficients=extinction_coefficients(extinction), noise=noise,
                       age_spacing=age_spacing, seed=seed, on_epoch=report)
    if result.info["coverage_note"]:
        console.print(f"note: {result.info['coverage_note']}", highlight=False)
    out.print(f"wrote {out_dir} ({result.info['epochs_run']} epochs, "
              f"{result.info['train_seconds']:.0f} s); held-out synthetic stars "
              f"(n={result.metrics['n']}): median |error|, robust sigma")
    for name in OUTPUTS:
        m = result.metrics[name]
        out.print(f"  {name:9s} {m['median_abs']:.4f}  {m['robust_sigma']:.4f}")


@app.command("yso-labels")
@_friendly
def yso_labels_cmd(
        model: Annotated[str, typer.Option(help="Folder from yso-train (or its network.keras)")],
        photometry: Annotated[str, typer.Option(
            help="Members: APOGEE_ID, G, BP, RP, PARALLAX (mas), J, H, K, W1, W2, W3 [, RADIUS_VAL, LUM_VAL]")],
        out_path: Annotated[str, typer.Option("--out", help="YSO label table to write (CSV)")],
) -> None:
    """YSO labels (TEFF, LOGG, FE_H=0, AGE, MASS, AV) for make-labels --yso."""
    from .yso_labels import yso_labels

    result = yso_labels(model, photometry, out_path)
    for band in result.absent_columns:
        console.print(f"note: no {band} column: set to its detection limit for every star")
    for apogee_id, reason in result.skipped:
        console.print(f"skipped {apogee_id}: {reason}", highlight=False)
    flagged = int(result.table["FLAG_EXTRAPOLATED"].sum())
    gaps = int((result.table["MISSING_BANDS"] != "").sum())
    out.print(f"wrote {len(result.table)} YSO labels to {out_path} ({len(result.skipped)} "
              f"skipped, {flagged} outside the training ranges: FLAG_EXTRAPOLATED, {gaps} with "
              f"unmeasured bands set to their limits: MISSING_BANDS)")


@app.command(context_settings=MANY_PATHS)
@_friendly
def infer(
        ctx: typer.Context,
        model: Annotated[str, typer.Option(
            help="Run folder, .keras file, exported SavedModel or .tflite file")],
        out_path: Annotated[str, typer.Option(
            "--out", help="Catalog to write, .csv or .fits (an existing file is replaced, "
                          "whole, once the new one is complete)")],
        spectra: Annotated[Optional[list[str]], typer.Option(
            "--spectra", help="apStar files, folders, globs, or record folders")] = None,
        table: Annotated[Optional[str], typer.Option(
            help="allStar/allField FITS table listing the apStar files (with --root)")] = None,
        root: Annotated[Optional[str], typer.Option(
            help="Folder with the SAS layout TELESCOPE/FIELD/FILE of --table's files")] = None,
        mc: Annotated[Optional[int], typer.Option(
            help="Monte Carlo realizations per star, 0 = none"
            "  [default: 100; 0 for .tflite]")] = None,
        batch_size: Annotated[int, typer.Option(help="Stars per batch")] = 256,
        calibrated: Annotated[bool, typer.Option(
            "--calibrated", help="Require calibrated sigmas (an error if the model has no calibration)")] = False,
        raw_sigma: Annotated[bool, typer.Option(
            "--raw-sigma", help="The paper's raw Monte Carlo sigma, not the calibrated one")] = False,
        mc_dropout: Annotated[bool, typer.Option(
            "--mc-dropout", help="Add MC-dropout spread (raw sigma; run folders only)")] = False,
        seed: Annotated[Optional[int], typer.Option(
            help="Random seed of the noise draws  [default: a fresh seed each run]")] = None,
        engine: Annotated[str, typer.Option(help="local, or ray (Ray Data; pip install 'apnet-tf[ray]')")] = "local",
        ray_address: Annotated[Optional[str], typer.Option(
            "--ray-address", help="Ray cluster to join (default: a local Ray instance)")] = None,
        workers: Annotated[Optional[int], typer.Option(
            help="Processes reading FITS files ahead of the model [default: one per core]")] = None,
        mask_bits: Annotated[Optional[str], typer.Option(
            help="Comma-separated apStar PIXMASK bits that mark a pixel bad in FITS inputs; "
                 "use the bits the training records were made with  [default: 0-6]")] = None,
) -> None:
    """Predict Teff, log g and [Fe/H] with uncertainties and write a catalog.

    Sigmas are calibrated on the run's dev split whenever the model carries a calibration.json
    (fit writes one); --raw-sigma gives the paper's raw Monte Carlo sigma. The catalog header
    (SIGMA, SIGCAL, MC, MCSEED) says which it holds.

    Finished batches are kept in OUT.parts/ until the catalog is written, so re-running a killed
    command resumes it (only if the model's content, the inputs and every option are the same).
    """
    from .infer_job import run_infer

    if calibrated and raw_sigma:
        raise ApnetError("--calibrated and --raw-sigma exclude each other")
    calibrated = False if raw_sigma else True if calibrated else False if mc_dropout else None
    spectra = _with_extra_paths(spectra or [], ctx)
    with progress_bar("infer") as update:
        result = run_infer(model, out_path, spectra, table=table, root=root, mc=mc,
                           batch_size=batch_size, calibrated=calibrated, mc_dropout=mc_dropout,
                           seed=seed, engine=engine, ray_address=ray_address, workers=workers,
                           on_progress=update,
                           mask_bits=None if mask_bits is None else _int_list(mask_bits,
                                                                              "--mask-bits"))
    for line in result.failures:
        console.print(f"[yellow]skipped:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)
    cat = result.catalog
    out.print(f"wrote {len(cat)} stars to {out_path} ({int(cat['YSO_CANDIDATE'].sum())} YSO "
              f"candidates, {int(cat['BAD'].sum())} flagged BAD; sigma: {cat.meta['SIGMA']})")
    if result.failures:
        console.print(f"[yellow]{len(result.failures)} file(s) skipped[/yellow]")
        raise typer.Exit(2)


@app.command()
@_friendly
def calibrate(
        model: Annotated[str, typer.Option(help="Run folder (calibration.json is written there)")],
        records: Annotated[str, typer.Option(help="Record folder with a dev split")],
        mc: Annotated[int, typer.Option(help="Monte Carlo realizations per star")] = 100,
        seed: Annotated[int, typer.Option(help="Random seed")] = 0,
) -> None:
    """Fit the sigma calibration on the dev split again (fit already does this once).

    Factors on the raw Monte Carlo sigma per Kiel-diagram region of the prediction and S/N bin.
    """
    from .calibration import calibrate as run_calibrate

    cal = run_calibrate(model, records, realizations=mc, seed=seed)
    out.print(f"wrote {os.path.join(model, 'calibration.json')} ({cal.dev_stars} dev stars)")
    for name, raw, c in zip(("teff", "logg", "fe_h"), cal.coverage_dev_raw,
                            cal.coverage_dev_calibrated):
        out.print(f"  {name:5s} dev 1-sigma coverage raw {raw:.3f} -> calibrated {c:.3f}")


@app.command()
@_friendly
def evaluate(
        model: Annotated[str, typer.Option(help="Run folder or .keras file")],
        records: Annotated[str, typer.Option(help="Labelled record folder")],
        out_dir: Annotated[str, typer.Option("--out", help="Folder for tables and plots")],
        mc: Annotated[int, typer.Option(help="Monte Carlo realizations per star")] = 100,
        seed: Annotated[int, typer.Option(help="Random seed")] = 0,
        splits: Annotated[str, typer.Option(help="Comma-separated splits to evaluate")] = "train,dev,test",
) -> None:
    """Tables 2 and 3, 1-sigma coverage and PNG plots for a model on a record set."""
    from .evaluation import evaluate as run_evaluate

    chosen = tuple(s.strip() for s in splits.split(",") if s.strip())
    unknown = set(chosen) - {"train", "dev", "test"}
    if unknown or not chosen:
        raise ApnetError(f"--splits: expected some of train,dev,test, got {splits!r}")
    with progress_bar("evaluate") as update:
        res = run_evaluate(model, records, out_dir, realizations=mc, seed=seed, splits=chosen,
                           on_progress=update)
    out.print("Table 2, combined standardised MSE:")
    out.print(res["table2"].to_string(float_format=lambda v: f"{v:.4g}"))
    out.print("Table 3, scatter between labels and predictions:")
    out.print(res["table3"].to_string(float_format=lambda v: f"{v:.4g}"))
    out.print("1-sigma coverage (target 0.683):")
    out.print(res["coverage"].to_string(float_format=lambda v: f"{v:.3f}"))
    out.print(f"wrote {len(res['files'])} files to {out_dir}")


@app.command()
@_friendly
def export(
        model: Annotated[str, typer.Option(help="Run folder or .keras file")],
        out_dir: Annotated[str, typer.Option("--out", help="e.g. saved_models/apogee_net")],
        version: Annotated[Optional[int], typer.Option(
            help="Version folder  [default: the next free number]")] = None,
        tflite: Annotated[str, typer.Option(
            help="Comma-separated TFLite variants of float32,float16,int8,int8-weights "
                 "('' for none)")] = "float32,float16,int8-weights",
        mc: Annotated[int, typer.Option(help="Realizations in predict_with_uncertainty")] = 100,
) -> None:
    """Export a SavedModel for TF Serving (three signatures) and TFLite variants for LiteRT."""
    from .export import export_model

    variants = [v.strip() for v in tflite.split(",") if v.strip()]
    meta = export_model(model, out_dir, version=version, tflite=variants, mc_realizations=mc)
    out.print(f"SavedModel: {os.path.join(out_dir, str(meta['version']))} "
              "(signatures serving_default, monte_carlo, predict_with_uncertainty)")
    for variant, info in meta["tflite"].items():
        out.print(f"TFLite {variant:12s} {os.path.join(out_dir, info['file'])} "
                  f"({info['bytes'] / 2**20:.1f} MiB)")


@app.command("import-torch")
@_friendly
def import_torch_cmd(
        state_dict: Annotated[str, typer.Argument(metavar="STATE_DICT", help="PyTorch state_dict (.pt) of Appendix B")],
        out_dir: Annotated[str, typer.Option("--out", help="Run folder to write")],
        mean: Annotated[Optional[str], typer.Option(
            help="Target means teff,logg,fe_h (K, dex, dex)  [default: paper Table 1]")] = None,
        std: Annotated[Optional[str], typer.Option(
            help="Target stds teff,logg,fe_h (K, dex, dex)  [default: paper Table 1]")] = None,
        overwrite: Annotated[bool, typer.Option(
            "--overwrite", help="Replace the run already in --out (its files are deleted)")] = False,
) -> None:
    """Load the paper's PyTorch weights into a Keras run folder (default stats: paper Table 1)."""
    from .export import PAPER_MEAN, PAPER_STD, import_torch

    m = PAPER_MEAN if mean is None else _float_triple(mean, "--mean")
    s = PAPER_STD if std is None else _float_triple(std, "--std")
    path = import_torch(state_dict, out_dir, m, s, overwrite=overwrite)
    out.print(f"wrote {path}")


def _float_triple(text: str, flag: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ApnetError(f"{flag}: expected three comma-separated numbers (teff,logg,fe_h), "
                         f"got {text!r}")
    return values


def _with_extra_paths(paths: list[str], ctx: typer.Context) -> list[str]:
    """--spectra's values plus the extra words the shell expanded a glob into."""
    extra = list(ctx.args)
    flags = [a for a in extra if a.startswith("-")]
    if flags:
        raise ApnetError(f"unknown option {flags[0]}")
    return list(paths) + extra


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ApnetError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
