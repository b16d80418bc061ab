"""Constants named once: the APOGEE wavelength grid, the target order, the paper's hyperparameters.

Every other module imports these rather than repeating the numbers.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CRVAL1", "CDELT1", "N_PIXELS", "wavelength_grid", "INSTRUMENTS", "BOSS_WAVE_MIN",
    "BOSS_WAVE_MAX", "BOSS_N_PIXELS", "TARGETS", "LABEL_COLUMNS",
    "TARGET_UNITS", "CATEGORIES", "SPLITS", "SPLIT_FRACTIONS", "MISSING_VALUE", "SENTINELS",
    "LABEL_RANGES", "MAGNITUDE_RANGE", "PARALLAX_LIMIT", "BAD_ERROR_THRESHOLD",
    "PAPER_LEARNING_RATE", "PAPER_BATCH_SIZE", "PAPER_DROPOUT", "EARLY_STOPPING_PATIENCE",
    "PAYNE_RESAMPLE_FRACTION", "CONV_FILTERS", "CONV_KERNEL", "DENSE_UNITS", "PHOTOMETRY_UNITS",
    "FIT_ARCHS", "MC_DRAWS", "MC_ERROR_CAP", "MC_ROWS_PER_CHUNK", "BOSSNET_MC_ROWS_PER_CHUNK",
    "CALIBRATION_MC_DRAWS", "CALIBRATION_STARS_PER_STRATUM", "INPUT_SCALINGS", "PRECISIONS",
    "INFERENCE_PRECISIONS", "AUTO_PRECISION_PROBE", "AUTO_MEDIAN_SHIFT", "AUTO_MAX_SHIFT",
    "BEST_MODEL",
    "PRETRAINED_MODEL", "NORMALIZATION", "RUN_RECORD", "HISTORY", "ROUNDS", "PRETRAIN_DONE",
    "PRETRAIN_STATE", "RUN_FILES", "RENAMED", "renamed_keys", "TORCH_CPU_INSTALL", "TORCH_MISSING"
]

#: apStar log-linear wavelength grid: log10(lambda / Angstrom) = CRVAL1 + CDELT1 * i.
CRVAL1 = 4.179
CDELT1 = 6e-6
N_PIXELS = 8575


def wavelength_grid() -> np.ndarray:
    """Vacuum wavelength of each apStar pixel in Angstrom, shape (8575,)."""
    return 10.0 ** (CRVAL1 + CDELT1 * np.arange(N_PIXELS))


#: The spectrographs whose files the package reads and simulates: APOGEE (apStar files) and
#: BOSS (SDSS spec files).
INSTRUMENTS = ("apogee", "boss")
#: BOSS Net's input grid (hutchresearch/BOSSNet and sdss/astra): BOSS_N_PIXELS wavelengths,
#: evenly spaced from BOSS_WAVE_MIN to BOSS_WAVE_MAX Angstrom (``io.boss.boss_grid``).
BOSS_WAVE_MIN = 3800.0
BOSS_WAVE_MAX = 8900.0
BOSS_N_PIXELS = 3900


#: The order of the three targets everywhere: arrays, manifests, model outputs.
TARGETS = ("teff", "logg", "fe_h")
#: SDSS allStar column names for the targets, in TARGETS order.
LABEL_COLUMNS = ("TEFF", "LOGG", "FE_H")
#: Physical units of the targets, in TARGETS order.
TARGET_UNITS = ("K", "dex", "dex")

#: Label categories of the paper (section 2) and their train/dev/test fractions (section 3).
CATEGORIES = ("payne", "mstar", "yso")
SPLITS = ("train", "dev", "test")
SPLIT_FRACTIONS = {
    "payne": (0.8, 0.1, 0.1),
    "mstar": (0.6, 0.2, 0.2),
    "yso": (0.6, 0.2, 0.2),
}

#: A label value that means "missing" in APOGEE tables.
MISSING_VALUE = -9999.0
#: Placeholders that survey tables write for "no value" in any number column (APOGEE -9999 and
#: -9999.99, -999 elsewhere). A number equal to one of them is read as missing and counted.
#: Positive placeholders (99.999 and 99.99 for magnitudes, 999 ...) are caught by the ranges below.
SENTINELS = (-9999.0, -9999.99, -999.0, -999.99)

#: Physical ranges (inclusive) of the labels, by column: a value outside is a typo or a
#: placeholder, never a star (the coolest brown dwarfs APOGEE observes are above 2,000 K, the
#: hottest OB stars below 50,000 K). It is read as missing, counted and reported.
LABEL_RANGES = {"TEFF": (2000.0, 50000.0), "LOGG": (-1.0, 6.0), "FE_H": (-5.0, 1.5)}
#: Apparent magnitudes outside this range are placeholders (99.999, -999, ...), not photometry.
MAGNITUDE_RANGE = (-2.0, 30.0)
#: Parallaxes (mas) and their errors beyond this size are placeholders: the nearest star is at
#: 768 mas.
PARALLAX_LIMIT = 1000.0

#: Pixels whose error is at least this are bad (apStar uses 1e10 at chip gaps).
BAD_ERROR_THRESHOLD = 1e9

#: Paper section 3.3 hyperparameters (the `paper` recipe).
PAPER_LEARNING_RATE = 1e-3
PAPER_BATCH_SIZE = 128
PAPER_DROPOUT = 0.1
#: Early stopping patience, in epochs without a dev-loss improvement (paper 3.3).
EARLY_STOPPING_PATIENCE = 5
#: Fraction of the Payne training stars drawn in each fine-tuning round (paper 3.4).
PAYNE_RESAMPLE_FRACTION = 0.05

#: Appendix B: Conv1D filters of the 12 layers, a MaxPool1D(2) after each pair.
CONV_FILTERS = (8, 8, 16, 16, 16, 16, 32, 32, 32, 32, 64, 64)
CONV_KERNEL = 3
DENSE_UNITS = 512
#: APOGEE Net II's photometry branch: Dense layers over the seven values, each with a ReLU.
PHOTOMETRY_UNITS = (8, 16, 32, 32, 64)
#: ``fit --arch``: "apnet", the Appendix B network over flux; "anet2", APOGEE Net II's two-input
#: layout (flux and photometry) with this package's in-model scaling and target order; "anet3",
#: APOGEE Net III's (BOSS Net's) layout over flux with this package's target order.
FIT_ARCHS = ("apnet", "anet2", "anet3")

#: Paper section 3.5: Monte Carlo draws per star and the error cap (multiples of the typical error).
MC_DRAWS = 100
MC_ERROR_CAP = 5.0
#: The most Monte Carlo rows (stars x draws) in one model call: it bounds memory (at 1,000
#: rows the first convolution's output is 270 MB); its cost in speed is measured by
#: bench/infer.py (BENCHMARKS.md, "Inference").
MC_ROWS_PER_CHUNK = 1000
#: The same bound for APOGEE Net III and BOSS Net, whose activations per row are many times the
#: package's network's (4 to 64 channels at full length): 6 stars of 20 draws and their
#: un-noised pass per call bound ``infer --mc 20``'s memory without slowing it (bench/
#: memory_bossnet.py, BENCHMARKS.md "Memory of APOGEE Net III's Monte Carlo").
BOSSNET_MC_ROWS_PER_CHUNK = 126
#: The sigma calibration's Monte Carlo (``calibration.subset``): draws per star, and the
#: training stars per stratum (Kiel region of the labels x S/N tercile) of the subset it runs
#: over; chosen by ``bench/calibration.py --subsets`` (BENCHMARKS.md, "Uncertainty calibration").
CALIBRATION_MC_DRAWS = 20
CALIBRATION_STARS_PER_STRATUM = 150

#: Input scalings: "none" feeds raw flux (the paper); "mean" divides each spectrum by its mean
#: absolute flux over non-zero pixels and subtracts 1, keeping the continuum shape.
INPUT_SCALINGS = ("none", "mean")
#: Compute precisions of ``build_model``: Keras dtype policies.
PRECISIONS = ("float32", "mixed_bfloat16")
#: ``infer --precision``: the network's forward pass in float32, in bfloat16 (float32 weights,
#: inputs scaled and outputs de-standardised in float32), or "auto" (``model.precision``).
INFERENCE_PRECISIONS = PRECISIONS + ("auto",)
#: "auto" runs the first spectra of a job (at most this many) both ways and keeps bfloat16 only
#: if, for every label, the median ``abs(bfloat16 - float32)`` is at most AUTO_MEDIAN_SHIFT and the
#: largest at most AUTO_MAX_SHIFT of the label's spread (the std the model de-standardises with).
AUTO_PRECISION_PROBE = 256
AUTO_MEDIAN_SHIFT = 0.001
AUTO_MAX_SHIFT = 0.01

#: The files of a run folder.
BEST_MODEL = "best.keras"
PRETRAINED_MODEL = "pretrained.keras"
NORMALIZATION = "normalization.json"
RUN_RECORD = "run.json"
HISTORY = "history.csv"
ROUNDS = "finetune_rounds.csv"
PRETRAIN_DONE = "pretrain.done"
PRETRAIN_STATE = "early_stopping_pretrain.json"
#: Every file ``fit`` writes into a run folder (``--overwrite`` deletes these and nothing else),
#: plus calibration.json, which belongs to the model it was fitted on.
RUN_FILES = (BEST_MODEL, PRETRAINED_MODEL, NORMALIZATION, RUN_RECORD, HISTORY, ROUNDS,
             "training.png", PRETRAIN_STATE, PRETRAIN_DONE, "backup", "table2.csv", "table2.md",
             "table3.csv", "table3.md", "calibration.json", "novelty.json")

#: Names this version gave a new spelling (one name per idea), old -> new. Files written before
#: (calibration.json, run.json, export metadata, weight sidecars) and the old spellings of
#: options are read through this table, for one release.
RENAMED = {"realizations": "mc", "appendix-b": "apnet"}


def renamed_keys(record: dict) -> dict:
    """``record`` with each key that ``RENAMED`` renamed under its new name (a new key wins)."""
    return {RENAMED.get(k, k): v for k, v in record.items()
            if k not in RENAMED or RENAMED[k] not in record}


#: How to install PyTorch for import-torch: its CPU build, as PyTorch's own install selector
#: gives it (plain ``pip install torch`` takes the multi-GB CUDA build on Linux). The published
#: networks' page gives the same line.
TORCH_CPU_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
#: import-torch's one line when PyTorch is not installed.
TORCH_MISSING = f"import-torch needs PyTorch, its CPU build: {TORCH_CPU_INSTALL}"
