"""apnet-tf: APOGEE Net (Olney et al. 2020, AJ 159, 182) in Keras/TensorFlow.

Raw apStar spectra in, Teff (K), log g (dex) and [Fe/H] (dex) with per-star uncertainties out.

The subpackages, in data-flow order (each imports only from those before it; the import-linter
contract in ``pyproject.toml`` holds the code to this order):

``constants``, ``errors``, ``quiet``, ``registration`` (base) -> ``io`` -> ``data``, ``model`` ->
``inference``, ``labels`` -> ``calibration`` -> ``evaluation``, ``export`` -> ``training`` ->
``workflows`` -> ``cli``.

Names are imported from the module that defines them; this file defines only the version.
"""

__version__ = "0.1.0"

from apnet_tf.registration import install as _install_keras_registration

_install_keras_registration()
