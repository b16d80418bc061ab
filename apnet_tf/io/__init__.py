"""Reading and writing files, floor 1: apStar spectra (``fastfits``, ``spectra``), BOSS spec files
(``fasttable``, ``boss``) and BOSS Net's wavelength grid (``boss_grid``), survey tables in the
SAS layout (``survey_table``) and tables of BOSS spectra (``boss_table``), Net II photometry
(``photometry``), single-pixel outliers (``spikes``), the catalog writer, its flags, their
counts and its one column schema (``catalog``, ``catalog_flags``, ``catalog_counts``,
``catalog_schema``), and which files and folders the package made (``files``, ``folders``).

May import: the base modules (``constants``, ``errors``, ``quiet``, ``wording``) only. No
TensorFlow: the FITS readers run in worker processes that must start fast.
"""

__all__ = ["boss", "boss_grid", "boss_table", "catalog", "catalog_counts", "catalog_flags",
           "catalog_schema", "fastfits", "fasttable", "files", "folders", "photometry", "spectra",
           "spikes", "survey_table"]
