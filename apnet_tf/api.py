"""The notebook API, floor 9 beside ``cli/``: the package's face for Python users, as the
command line is for the shell::

    import apnet_tf
    model = apnet_tf.load("run/")                # run folder, SavedModel, .tflite
    cat = model.predict(flux, err, mc=100)       # (N, 8575) arrays in -> astropy QTable
    cat = model.predict_files("apStar/*.fits")   # files in -> the table ``infer`` writes

``apnet_tf`` itself exposes these names (``load``, ``Model``, ``fit``, ``make_records``, and the
readers ``read_apstar`` and ``read_boss``); every deeper function stays where it is defined.
Each function here calls the library functions the commands call, and imports them when it is
called, so that ``import apnet_tf`` stays quick and free of TensorFlow.

May import: everything but ``cli``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence

__all__ = ["ModelInfo", "Model", "load", "fit", "make_records"]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a ``Model`` is.

    Attributes:
        path: the run folder, .keras file, SavedModel version folder or .tflite file.
        runtime: what runs it: "keras", "saved_model" or "tflite".
        network: a published network's name ("anet1", "anet2", ...), else the layout it was
            trained in: "apnet" (flux only) or "anet2" (flux and photometry).
        published: whether the weights are a published network's (imported with import-torch).
        conventions: the published network's conventions (output order, constants, Monte
            Carlo style); None for the package's own models.
        calibration: the sigma calibration (``model.calibration.Calibration``), None without.
        precision: the forward pass's compute precision ("float32", "mixed_bfloat16").
        takes_photometry: whether it takes photometry as well as flux (APOGEE Net II).
        label_range: (lo, hi) of Teff, log g, [Fe/H] in the training labels (the BAD flag's).
    """

    path: str
    runtime: str
    network: str
    published: bool
    conventions: dict | None
    calibration: object
    precision: str
    takes_photometry: bool
    label_range: tuple


class Model:
    """A model to predict with, whatever runs it (Keras, SavedModel, TFLite): ``load`` makes
    one. ``runtime`` is the runtime object underneath (``model.runtime.Runtime``)."""

    def __init__(self, runtime):
        self.runtime = runtime

    @property
    def info(self) -> ModelInfo:
        rt = self.runtime
        conv = rt.conventions
        return ModelInfo(path=rt.path, runtime=rt.kind,
                         network=conv["arch"] if conv else
                         ("anet2" if rt.takes_photometry else "apnet"),
                         published=conv is not None, conventions=conv,
                         calibration=rt.calibration, precision=rt.precision,
                         takes_photometry=rt.takes_photometry, label_range=rt.label_range())

    def __repr__(self) -> str:
        i = self.info
        return (f"Model({i.path!r}, runtime={i.runtime!r}, network={i.network!r}, "
                f"calibrated={i.calibration is not None}, precision={i.precision!r})")

    def predict(self, flux, err, bad=None, *, mc: int | None = None, seed: int | None = None,
                snr=None, apogee_id=None, ra=None, dec=None, photometry=None,
                calibrated: bool | None = None, mc_dropout: bool = False,
                batch_size: int = 256, precision: str = "float32"):
        """Teff, log g and [Fe/H] with uncertainties and flags for spectra in memory.

        Args:
            flux, err: (N, 8575) or (8575,): raw apStar flux and errors on the apStar grid.
            bad: (N, 8575) bool, pixels not to trust, besides non-finite and huge errors.
            mc: Monte Carlo draws per star; None: 100 (0 for a .tflite model, whose catalog
                then has point predictions and NaN sigmas).
            seed: the noise draws' seed (None: a fresh one, in the table's MCSEED).
            snr: (N,) or one S/N, for the LOW_SNR flag and the calibration's S/N terciles
                (an apStar header's SNR); None: the median flux/err of the good pixels.
            apogee_id, ra, dec: (N,) each; None: the row numbers, NaN.
            photometry: (N, 7) raw photometry for APOGEE Net II (``io.photometry``), or a
                dict APOGEE_ID -> (7,) (``io.photometry.read_photometry``).
            calibrated: None: calibrated sigmas when the model has a calibration; True: an
                error without one; False: the paper's raw Monte Carlo sigma.
            mc_dropout, batch_size, precision: as ``apnet-tf infer``'s options.

        Returns:
            An astropy QTable with the columns, units, flags and header of the catalog that
            ``apnet-tf infer`` writes (``docs/catalog.md``), one row per spectrum; infer's
            notes (e.g. a model without a novelty reference: NOVELTY NaN) as warnings.
        """
        from apnet_tf.inference.arrays import array_batch, predict_arrays
        from apnet_tf.inference.settings import InferenceSettings
        from apnet_tf.io.photometry import PhotometryTable

        table = (PhotometryTable(photometry, "photometry") if isinstance(photometry, dict)
                 else None)
        batch = array_batch(flux, err, bad, snr, apogee_id, ra, dec,
                            None if table is not None else photometry)
        settings = InferenceSettings(mc=mc, batch_size=batch_size, calibrated=calibrated,
                                     mc_dropout=mc_dropout, seed=seed, photometry=table,
                                     precision=precision)
        return _qtable(predict_arrays(self.runtime, batch, settings))

    def predict_files(self, files: str | os.PathLike | Sequence = (), *,
                      table: str | None = None, root: str | None = None,
                      mc: int | None = None, seed: int | None = None,
                      calibrated: bool | None = None, mc_dropout: bool = False,
                      batch_size: int = 256, mask_bits: Sequence[int] | None = None,
                      photometry=None, precision: str = "float32", workers: int | None = 0):
        """The catalog ``apnet-tf infer`` writes, as a table: the same columns, units, flags
        and, for the same inputs and seed, the same numbers.

        Args:
            files: apStar files, folders, globs or record folders: one, or a list of them.
            table, root: an allStar/allField table and the folder of its TELESCOPE/FIELD/FILE
                layout; for BOSS Net, an spAll-like table and the folder of its spec files
                (``infer --table --root``; ``inference.job.table_listing``).
            photometry: a table (FITS, CSV) of APOGEE_ID and the seven photometry columns,
                or a dict APOGEE_ID -> (7,), for APOGEE Net II.
            workers: processes reading FITS files ahead of the model (0: in this process;
                None: one per core).
            mc, seed, calibrated, mc_dropout, batch_size, mask_bits, precision: as
                ``predict``'s and ``apnet-tf infer``'s.

        Returns:
            An astropy QTable; an unreadable file is left out with a warning naming it, and
            infer's notes (rows of the table with no file, a model without a novelty
            reference) are warnings.
        """
        from apnet_tf.inference.job import check_inputs, infer_catalog, table_listing
        from apnet_tf.inference.settings import InferenceSettings
        from apnet_tf.io.photometry import PhotometryTable, read_photometry
        from apnet_tf.io.survey_table import missing_note

        paths = ([os.fspath(files)] if isinstance(files, (str, os.PathLike))
                 else [os.fspath(f) for f in files])
        settings = InferenceSettings(mc=mc, batch_size=batch_size, calibrated=calibrated,
                                     mc_dropout=mc_dropout, seed=seed, mask_bits=mask_bits,
                                     precision=precision)
        check_inputs(paths, table, root, settings, "local", workers)
        listing = table_listing(self.runtime, table, root)
        if isinstance(photometry, (str, os.PathLike)):
            photometry = read_photometry(os.fspath(photometry))
        elif isinstance(photometry, dict):  # joined as a table's APOGEE_IDs are
            photometry = PhotometryTable(photometry, "photometry")
        settings = dataclasses.replace(settings, photometry=photometry)
        result = infer_catalog(self.runtime, paths, settings, listing=listing, table=table,
                               workers=workers)
        if listing is not None and listing.missing:  # rows of the table with no file
            result.notes.append(missing_note(table, root, listing, None))
        return _qtable(result)


def _qtable(result):
    """The catalog of an ``InferenceResult`` as ``io.catalog`` writes it (units, descriptions,
    header), as an astropy QTable; its skipped inputs and notes as warnings."""
    from astropy.table import QTable

    from apnet_tf.io.catalog import described

    for line in result.failures:
        warnings.warn(f"skipped {line}", stacklevel=3)
    for line in result.notes:
        warnings.warn(line, stacklevel=3)
    return QTable(described(result.catalog))


def load(path: str | os.PathLike, calibration: bool = True) -> Model:
    """A model to predict with: a run folder (``apnet-tf fit``; a published network's from
    ``apnet-tf import-torch``), a .keras file, an exported SavedModel (its version folder, or
    the folder of versions: the newest) or a .tflite file (``apnet-tf export``).

    Args:
        calibration: False leaves any calibration.json unread (raw Monte Carlo sigmas).

    Raises:
        ApnetError: nothing loadable at ``path``, or an invalid calibration.json.
    """
    from apnet_tf.quiet import native_stderr_silenced

    with native_stderr_silenced():  # TensorFlow's C++ start-up lines, once
        from apnet_tf.model.loading import load_model
    return Model(load_model(os.fspath(path), calibration))


def fit(records: str | os.PathLike, out: str | os.PathLike,
        recipe: str | Sequence[str] = "default", *, stage: str = "all",
        arch: str | None = None, resume: bool = False, overwrite: bool = False,
        strategy: str = "default", verbose: bool = True, **fields):
    """Train on a record folder (``make_records``) into the run folder ``out``, then write
    Tables 2 and 3 and fit the sigma calibration: ``apnet-tf fit``.

    Args:
        recipe: "default", "paper", a TOML recipe file, or a list of them, each on top of the
            one before (``training.recipe_files.layered_recipe``).
        fields: recipe fields (``training.recipes.Recipe``), e.g. ``epochs=30,
            batch_size=64``; they override the recipe.
        stage, arch, resume, overwrite, strategy: as ``apnet-tf fit``'s options.
        verbose: print a line per epoch and per fine-tuning round.

    Returns:
        The ``training.fitting.FitResult``: ``table3``, ``calibration``, ``model`` (Keras), ...
        ``load(out)`` gives the ``Model`` to predict with.
    """
    from apnet_tf.training.recipe_files import layered_recipe
    from apnet_tf.wording import fine_tuning_round
    from apnet_tf.workflows import fit as fit_run

    sources = [recipe] if isinstance(recipe, (str, os.PathLike)) else list(recipe)
    rec = layered_recipe([os.fspath(s) for s in sources], **fields)
    on_epoch = on_round = None
    if verbose:
        def on_epoch(stage_name, epoch, logs):
            print(f"{stage_name} epoch {epoch}: standardised MSE, training "
                  f"{logs.get('loss', float('nan')):.4f}, dev "
                  f"{logs.get('val_loss', float('nan')):.4f}")

        def on_round(row):
            print(f"fine-tune {fine_tuning_round(row)}, "
                  f"{'kept' if row['improved'] else 'not kept'}")
    return fit_run(os.fspath(records), os.fspath(out), stage=stage, recipe=rec,
                   resume=resume, strategy=strategy, overwrite=overwrite, on_epoch=on_epoch,
                   on_round=on_round, arch=arch)


def make_records(spectra: str | os.PathLike | Sequence, out: str | os.PathLike,
                 labels: str | os.PathLike | None = None, **options):
    """apStar files (one, or a list of files, folders and globs) and a label table to
    sharded TFRecords and manifest.json in ``out``: ``apnet-tf make-records``.

    Args:
        options: ``shards``, ``compress``, ``mask_bits``, ``photometry``, ``on_progress``, as
            ``data.records.make_records``'s.

    Returns:
        The ``data.records.RecordsResult``: ``manifest``, ``failures``, ``report_lines``, ...
    """
    from apnet_tf.data.records import make_records as write_records

    paths = ([os.fspath(spectra)] if isinstance(spectra, (str, os.PathLike))
             else [os.fspath(s) for s in spectra])
    return write_records(paths, os.fspath(out),
                         labels=None if labels is None else os.fspath(labels), **options)
