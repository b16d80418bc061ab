"""apnet-tf: APOGEE Net (Olney et al. 2020) in Keras/TensorFlow.

Raw apStar spectra in, Teff (K), log g (dex) and [Fe/H] (dex) with per-star uncertainties out.
"""

__version__ = "0.1.0"

from .constants import N_PIXELS, TARGETS, wavelength_grid  # noqa: F401
from .errors import ApnetError  # noqa: F401
from .registration import install as _install_keras_registration

_install_keras_registration()
