"""Recipes: everything that decides how the network trains (``fit``'s flags override single
fields), the paper's and the default, and their checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from apnet_tf.constants import (
    EARLY_STOPPING_PATIENCE,
    INPUT_SCALINGS,
    PAPER_BATCH_SIZE,
    PAPER_DROPOUT,
    PAPER_LEARNING_RATE,
    PAYNE_RESAMPLE_FRACTION,
    PRECISIONS,
)
from apnet_tf.errors import ApnetError, check_seed

__all__ = ["Recipe", "RECIPES", "FILE_ONLY_FIELDS", "get_recipe", "flag_name"]

#: Fields set only in a recipe file (``fit --recipe FILE.toml``), not by flags of their own: the
#: options that measurement on the benchmark survey showed not to help (BENCHMARKS.md, 'How the
#: training defaults were chosen' and 'Fine-tuning variants on the same pretraining'), kept for
#: those who want to try them.
FILE_ONLY_FIELDS = ("min_improvement", "ema_momentum", "average_rounds")


def flag_name(field: str) -> str:
    """The ``fit`` flag of a recipe field: ``batch_size`` -> ``--batch-size``."""
    return "--" + field.replace("_", "-")


@dataclasses.dataclass
class Recipe:
    """Everything that decides how the network trains. Flags of ``fit`` override single fields."""

    optimizer: str = "adam"  # "adam" or "sgd"
    learning_rate: float = PAPER_LEARNING_RATE
    momentum: float = 0.0  # SGD only
    batch_size: int = 32
    dropout: float = PAPER_DROPOUT
    input_scaling: str = "mean"  # see model.INPUT_SCALINGS
    initializer: str = "he_normal"
    epochs: int = 100  # upper bound; early stopping usually ends sooner
    patience: int = EARLY_STOPPING_PATIENCE
    # an epoch counts as better only when its dev loss is this fraction below the best so far
    min_improvement: float = 0.0
    lr_plateau_patience: int = 3  # halve the learning rate after this many flat epochs; 0 = off
    noise_augment: bool = True  # add a fresh draw of the paper's per-pixel noise each epoch
    # Pretraining validates, keeps and saves the exponential moving average of the weights
    # (Polyak averaging; Keras' optimizer EMA) with this momentum; 0 = off. Off by default: on the
    # benchmark survey it smooths the dev loss but did not shorten training (BENCHMARKS.md).
    ema_momentum: float = 0.0
    finetune_learning_rate: float = PAPER_LEARNING_RATE / 10  # rounds start from a trained model
    finetune_fraction: float = PAYNE_RESAMPLE_FRACTION
    finetune_patience: int = 3  # rounds without mstar+yso dev improvement
    finetune_max_rounds: int = 20
    finetune_dev_tolerance: float = 0.05  # a round may not worsen the whole-dev loss by more
    # Fit the last layer again at the end, in inference mode, each category weighted alike
    # (``last_layer``): it removes the training split's offset of the rare M dwarfs and YSOs that
    # dropout, noise augmentation and the epoch-to-epoch wander of the weights leave. Off by
    # default: on the benchmark survey it did not bring the test split's scatter closer to the
    # Cramér-Rao bound in every group (BENCHMARKS.md, 'Why a fit can leave the M dwarfs and YSOs
    # offset').
    refit_last_layer: bool = False
    # End the fine-tuning on the average of its rounds' weights when that passes a round's gate
    # (``finetuning.rolling_resample``).
    average_rounds: bool = False
    precision: str = "auto"  # or "float32" or "mixed_bfloat16"; see resolve_precision
    seed: int = 0
    deterministic: bool = False  # TensorFlow op determinism: bit-identical reruns, slower

    def validate(self, origin: Callable[[str], str] = flag_name) -> Recipe:
        """Check every field; ``fit`` calls this before it touches the run folder.

        Args:
            origin: names where a field's value came from in an error (its command-line flag,
                ``--batch-size``, unless told otherwise: ``recipe.toml: batch_size``).

        Raises:
            ApnetError: the first bad field, named by ``origin``.
        """
        def bad(field: str, why: str) -> ApnetError:
            return ApnetError(f"{origin(field)}: {why}, got {getattr(self, field)!r}")

        choices = {"optimizer": ("adam", "sgd"), "input_scaling": INPUT_SCALINGS,
                   "precision": ("auto", *PRECISIONS)}
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise bad(field, f"choose one of {', '.join(allowed)}")
        for field in ("batch_size", "epochs", "patience", "finetune_patience",
                      "finetune_max_rounds"):
            if not getattr(self, field) >= 1:
                raise bad(field, "must be at least 1")
        if not self.lr_plateau_patience >= 0:
            raise bad("lr_plateau_patience", "must be 0 or more")
        check_seed(self.seed, origin("seed"))
        for field in ("learning_rate", "finetune_learning_rate"):
            if not (np.isfinite(getattr(self, field)) and getattr(self, field) > 0):
                raise bad(field, "must be a positive number")
        ranges = {"dropout": (0.0, 1.0, "must be at least 0 and below 1"),
                  "momentum": (0.0, 1.0, "must be at least 0 and below 1"),
                  "ema_momentum": (0.0, 1.0, "must be at least 0 and below 1"),
                  "min_improvement": (0.0, 1.0, "must be at least 0 and below 1"),
                  "finetune_dev_tolerance": (0.0, np.inf, "must be 0 or more")}
        for field, (lo, hi, why) in ranges.items():
            if not lo <= getattr(self, field) < hi:
                raise bad(field, why)
        if not 0 < self.finetune_fraction <= 1:
            raise bad("finetune_fraction", "must be above 0 and at most 1")
        return self


#: ``paper``: section 3.3 as published (SGD, lr 0.001, batch 128, dropout 0.1, raw flux, Keras
#: default initialisers). ``default``: what measurably learns; see BENCHMARKS.md.
RECIPES = {
    "paper": Recipe(optimizer="sgd", batch_size=PAPER_BATCH_SIZE, input_scaling="none",
                    initializer="glorot_uniform", lr_plateau_patience=0, noise_augment=False,
                    finetune_learning_rate=PAPER_LEARNING_RATE, precision="float32"),
    "default": Recipe(),
}


def get_recipe(name: str, **overrides) -> Recipe:
    """A named recipe with the given fields replaced (None values are ignored)."""
    if name not in RECIPES:
        raise ApnetError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return dataclasses.replace(RECIPES[name], **{k: v for k, v in overrides.items()
                                                 if v is not None})
