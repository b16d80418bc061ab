"""apnet-tf: APOGEE Net (Olney et al. 2020, AJ 159, 182) in Keras/TensorFlow.

Raw apStar spectra in, Teff (K), log g (dex) and [Fe/H] (dex) with per-star uncertainties out.

In a notebook::

    import apnet_tf
    model = apnet_tf.load("run/")                # run folder, SavedModel, .tflite
    cat = model.predict(flux, err, mc=100)       # (N, 8575) arrays in -> astropy QTable
    cat = model.predict_files("apStar/*.fits")   # files in -> the table ``infer`` writes

These few names (``load``, ``Model``, ``fit``, ``make_records``, ``read_apstar``,
``read_boss``) are the notebook API (``apnet_tf.api``, and the readers of ``apnet_tf.io``);
they are imported when first used, so ``import apnet_tf`` stays quick and imports no
TensorFlow. Every other name is imported from the module that defines it.

The subpackages, in data-flow order (each imports only from those before it; the import-linter
contract in ``pyproject.toml`` holds the code to this order):

``constants``, ``errors``, ``kiel``, ``quiet``, ``registration``, ``wording`` (base) -> ``io`` ->
``data``, ``model`` -> ``inference``, ``labels`` -> ``calibration`` -> ``evaluation``,
``export`` -> ``training`` -> ``workflows`` -> ``cli``, ``api``.
"""

import importlib

__version__ = "0.1.0"

#: The notebook API: each top-level name and the module that defines it.
NOTEBOOK_API = {"load": "apnet_tf.api", "Model": "apnet_tf.api", "fit": "apnet_tf.api",
                "make_records": "apnet_tf.api", "read_apstar": "apnet_tf.io.spectra",
                "read_boss": "apnet_tf.io.boss"}

__all__ = ["__version__", *NOTEBOOK_API]


def __getattr__(name: str):
    if name in NOTEBOOK_API:
        value = getattr(importlib.import_module(NOTEBOOK_API[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'apnet_tf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(NOTEBOOK_API))


from apnet_tf.registration import install as _install_keras_registration  # noqa: E402

_install_keras_registration()
