"""Typer option types of the ``apnet-tf`` commands, named once so that an option several commands
take has one flag name and one help text everywhere.

Each alias is ``Annotated[type, typer.Option(...)]``; the command gives the default, e.g.
``seed: Seed = 0`` (``--mc`` is 30 in the quick demo, 20 in calibrate, 100 elsewhere). Options of ``fit`` with no
default of their own take the recipe's (their help says which), hence ``Optional`` and None.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from apnet_tf.cli.panels import ADVANCED, PERFORMANCE, RECIPE
from apnet_tf.constants import AUTO_MAX_SHIFT, AUTO_MEDIAN_SHIFT, AUTO_PRECISION_PROBE

__all__ = [
    "Seed", "Mc", "StarsPerStratum", "ModelFile", "OverwriteRun", "Spectra", "Records", "RunOut",
    "Stage", "Arch",
    "RecipeSources", "ShowRecipe", "Epochs", "Resume", "Strategy", "Optimizer", "LearningRate", "Momentum",
    "TrainBatchSize", "Dropout", "InputScaling", "Initializer", "Patience", "FinetunePatience",
    "FinetuneFraction", "FinetuneMaxRounds", "Precision", "LrPlateauPatience", "NoiseAugment",
    "EmaMomentum", "MinImprovement", "RefitLastLayer",
    "FinetuneLearningRate", "FinetuneDevTolerance", "Deterministic", "RecipeSeed",
    "InferModel", "CatalogOut", "InferSpectra", "Table", "Root", "InferMc", "InferBatchSize",
    "Calibrated", "RawSigma", "McDropout", "InferSeed", "Engine", "RayAddress", "Workers",
    "InferMaskBits", "Photometry", "InferPrecision", "McBadPixels"
]

# ---------------------------------------------------------------- shared by several commands
Seed = Annotated[int, typer.Option(help="Random seed")]
Mc = Annotated[int, typer.Option(help="Monte Carlo draws per star")]
StarsPerStratum = Annotated[int, typer.Option(
    help="Training stars per stratum (Kiel region of the labels x S/N tercile) in the subset "
         "the calibration's Monte Carlo runs over; dev stars at most 5x that; 0: every star "
         "(the cost then grows with the survey)", rich_help_panel=PERFORMANCE)]
ModelFile = Annotated[str, typer.Option(help="Run folder or .keras file")]
OverwriteRun = Annotated[bool, typer.Option(
    "--overwrite", help="Replace the run already in --out (its files are deleted)")]
Spectra = Annotated[list[str], typer.Option("--spectra", help="apStar files, folders or globs")]

# ---------------------------------------------------------------- fit: the run and its recipe
# Required, but not by --show-recipe: fit_cmd says when they are missing, as Click would.
Records = Annotated[Optional[str], typer.Option(
    help="Record folder from make-records  [required]")]
RunOut = Annotated[Optional[str], typer.Option(
    "--out", help="Run folder to write: new or empty, or see --overwrite, --resume  [required]")]
Stage = Annotated[str, typer.Option(help="pretrain, finetune or all")]
RecipeSources = Annotated[Optional[list[str]], typer.Option(
    "--recipe", metavar="<name|file>", help="default, paper (SGD lr 0.001 on raw flux), or a TOML file of recipe fields "
    "(--show-recipe prints one); given again, each overrides the one before, and the flags "
    "below override them all  [default: default]")]
ShowRecipe = Annotated[bool, typer.Option(
    "--show-recipe", help="Print the recipe that --recipe and the flags make, as a TOML file "
    "for --recipe, and stop (needs no --records or --out)")]
Arch = Annotated[Optional[str], typer.Option(
    help="apnet (flux only), anet2 (APOGEE Net II's layout: flux and the records' photometry, "
         "from make-records --photometry) or anet3 (APOGEE Net III's layout, flux only; no "
         "--dropout or --input-scaling)  [default: apnet; the run's with --stage finetune or "
         "--resume]")]
Epochs = Annotated[Optional[int], typer.Option(
    help="Most epochs per stage or round; early stopping usually ends sooner  [default: 100]")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue a killed run")]
Strategy = Annotated[str, typer.Option(help="default, mirrored or multiworker", rich_help_panel=PERFORMANCE)]
Optimizer = Annotated[Optional[str], typer.Option(
    help="adam or sgd  [default: adam; sgd with --recipe paper]", rich_help_panel=RECIPE)]
LearningRate = Annotated[Optional[float], typer.Option(
    help="Learning rate of the first stage  [default: 0.001]", rich_help_panel=RECIPE)]
Momentum = Annotated[Optional[float], typer.Option(help="SGD momentum  [default: 0]", rich_help_panel=RECIPE)]
TrainBatchSize = Annotated[Optional[int], typer.Option(
    help="Spectra per training batch  [default: 32; 128 with --recipe paper]", rich_help_panel=RECIPE)]
Dropout = Annotated[Optional[float], typer.Option(help="Dropout rate, 0 to 1  [default: 0.1]", rich_help_panel=RECIPE)]
InputScaling = Annotated[Optional[str], typer.Option(
    help="none or mean  [default: mean; none with --recipe paper]", rich_help_panel=RECIPE)]
Initializer = Annotated[Optional[str], typer.Option(
    help="Keras initializer name  [default: he_normal; glorot_uniform with --recipe paper]", rich_help_panel=RECIPE)]
Patience = Annotated[Optional[int], typer.Option(
    help="Early-stopping patience (epochs)  [default: 5]", rich_help_panel=RECIPE)]
FinetunePatience = Annotated[Optional[int], typer.Option(
    help="Rounds without mstar+yso improvement before fine-tuning ends  [default: 3]", rich_help_panel=RECIPE)]
FinetuneFraction = Annotated[Optional[float], typer.Option(
    help="Fraction of Payne training stars drawn per round  [default: 0.05]", rich_help_panel=RECIPE)]
FinetuneMaxRounds = Annotated[Optional[int], typer.Option(
    help="Most fine-tuning rounds  [default: 20]", rich_help_panel=RECIPE)]
Precision = Annotated[Optional[str], typer.Option(
    help="auto (bfloat16 where this machine computes it in hardware), float32 or mixed_bfloat16"
         "  [default: auto; float32 with --recipe paper]", rich_help_panel=PERFORMANCE)]
LrPlateauPatience = Annotated[Optional[int], typer.Option(
    help="Halve the learning rate after this many epochs without dev improvement; "
         "0 = off  [default: 3; 0 with --recipe paper]", rich_help_panel=RECIPE)]
NoiseAugment = Annotated[Optional[bool], typer.Option(
    "--noise-augment/--no-noise-augment",
    help="Add fresh per-pixel noise (paper 3.5 scale) to the training spectra each "
         "epoch  [default: on; off with --recipe paper]", rich_help_panel=RECIPE)]
RefitLastLayer = Annotated[Optional[bool], typer.Option(
    "--refit-last-layer/--no-refit-last-layer",
    help="End by fitting the last layer again in inference mode on the train split, each "
         "category weighted alike  [default: off]", rich_help_panel=RECIPE)]
#: Recipe fields that measurement showed not to help (BENCHMARKS.md, 'How the training defaults
#: were chosen') are set in a recipe file; their old flags are hidden and accepted, with a note,
#: until the next release.
MinImprovement = Annotated[Optional[float], typer.Option(hidden=True)]
EmaMomentum = Annotated[Optional[float], typer.Option(hidden=True)]
FinetuneLearningRate = Annotated[Optional[float], typer.Option(
    help="Learning rate at the start of each fine-tuning round"
         "  [default: 0.0001; 0.001 with --recipe paper]", rich_help_panel=RECIPE)]
FinetuneDevTolerance = Annotated[Optional[float], typer.Option(
    help="A round may worsen the whole-dev loss by at most this fraction  [default: 0.05]", rich_help_panel=RECIPE)]
Deterministic = Annotated[Optional[bool], typer.Option(
    "--deterministic/--no-deterministic",
    help="TensorFlow op determinism: same seed, bit-identical weights (slower)"
         "  [default: off]", rich_help_panel=PERFORMANCE)]
RecipeSeed = Annotated[Optional[int], typer.Option(help="Random seed  [default: 0]")]

# ---------------------------------------------------------------- infer
InferModel = Annotated[str, typer.Option(
    help="Run folder, .keras file, exported SavedModel or .tflite file")]
CatalogOut = Annotated[str, typer.Option(
    "--out", help="Catalog to write, .csv, .ecsv or .fits (an existing file is replaced, whole, once "
                  "the new one is complete)")]
InferSpectra = Annotated[Optional[list[str]], typer.Option(
    "--spectra", help="apStar files (BOSS Net: BOSS spec-*.fits files), folders, globs, or "
                      "record folders")]
Table = Annotated[Optional[str], typer.Option(
    help="allStar/allField FITS table listing the apStar files (with --root); BOSS Net: an "
         "spAll FITS or CSV table of the spec files (FILE, or PLATE, MJD, FIBERID, or FIELD, "
         "MJD, CATALOGID)")]
Root = Annotated[Optional[str], typer.Option(
    help="Folder with the SAS layout TELESCOPE/FIELD/FILE of --table's files (BOSS: the spec "
         "files, in it or its PLATE4/ or FIELD6/MJD/ folders)")]
InferMc = Annotated[Optional[int], typer.Option(
    help="Monte Carlo draws per star, 0 = none  [default: 100; APOGEE Net III and BOSS Net "
         "20 (astra's); 0 for .tflite]")]
McBadPixels = Annotated[str, typer.Option(
    "--mc-bad-pixels", help="APOGEE Net III and BOSS Net: noise (their authors' Monte Carlo "
    "perturbs every pixel, bad ones with the clipped error) or fill (a file's bad pixels keep "
    "their fill value in every draw)", rich_help_panel=ADVANCED)]
InferBatchSize = Annotated[int, typer.Option(help="Stars per batch", rich_help_panel=PERFORMANCE)]
Calibrated = Annotated[bool, typer.Option(
    "--calibrated", help="Require calibrated sigmas (an error if the model has no calibration)", rich_help_panel=ADVANCED)]
RawSigma = Annotated[bool, typer.Option(
    "--raw-sigma", help="The paper's raw Monte Carlo sigma, not the calibrated one", rich_help_panel=ADVANCED)]
McDropout = Annotated[bool, typer.Option(
    "--mc-dropout", help="Add MC-dropout spread (raw sigma; run folders only)", rich_help_panel=ADVANCED)]
InferSeed = Annotated[Optional[int], typer.Option(
    help="Random seed of the noise draws  [default: a fresh seed each run]")]
Engine = Annotated[str, typer.Option(
    help="local, or ray (Ray Data; pip install 'apnet-tf[ray]')", rich_help_panel=PERFORMANCE)]
RayAddress = Annotated[Optional[str], typer.Option(
    "--ray-address", help="Ray cluster to join (default: a local Ray instance)", rich_help_panel=PERFORMANCE)]
Workers = Annotated[Optional[int], typer.Option(
    help="Processes reading FITS files ahead of the model [default: one per core]", rich_help_panel=PERFORMANCE)]
InferMaskBits = Annotated[Optional[str], typer.Option(
    help="Comma-separated apStar PIXMASK bits that mark a pixel bad in FITS inputs; use the "
         "bits the training records were made with  [default: 0-6]", rich_help_panel=ADVANCED)]
Photometry = Annotated[Optional[str], typer.Option(
    "--photometry", help="APOGEE Net II: FITS or CSV table of APOGEE_ID and GAIAEDR3_PARALLAX, "
    "GAIAEDR3_PHOT_G_MEAN_MAG, GAIAEDR3_PHOT_BP_MEAN_MAG, GAIAEDR3_PHOT_RP_MEAN_MAG, J, H, K, "
    "joined on APOGEE_ID (an allStar/allField --table carries them already)")]
InferPrecision = Annotated[str, typer.Option(
    "--precision", help="The network's compute precision: float32; mixed_bfloat16 (bfloat16 "
    "compute, float32 weights and outputs; Keras models); auto (bfloat16 where this machine "
    f"computes it in hardware, as in fit, kept only if, on the job's first {AUTO_PRECISION_PROBE} spectra, it moves no label by "
    f"more than {100 * AUTO_MEDIAN_SHIFT:g}% of its spread at the median and "
    f"{100 * AUTO_MAX_SHIFT:g}% at most). The catalog's PRECISN keyword says which ran", rich_help_panel=PERFORMANCE)]
