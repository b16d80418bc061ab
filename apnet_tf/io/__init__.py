"""Reading and writing files, floor 1: apStar spectra (``fastfits``, ``spectra``), survey tables
in the SAS layout (``survey_table``), Net II photometry (``photometry``), the catalog writer, its
flags and its one column schema (``catalog``, ``catalog_flags``, ``catalog_schema``), and which
files and folders the package made (``files``, ``folders``).

May import: the base modules (``constants``, ``errors``, ``quiet``) only. No TensorFlow: the FITS
readers run in worker processes that must start fast.
"""

__all__ = ["catalog", "catalog_flags", "catalog_schema", "fastfits", "files", "folders",
           "photometry", "spectra", "survey_table"]
