"""Prediction at survey scale, floor 4 (beside ``labels``): one job's settings as one frozen object
(``settings``), streamed batches into catalog parts by the local engine (``predict``; a batch's
part and the catalog from the parts, ``parts``), spectra in memory into the same catalog
(``arrays``), one ``infer`` job with its lock (``job``), the spike and novelty tests of each
batch (``screening``), its resumable work folder (``workdir``), the Ray Data engine
(``ray_engine``) and a two-input job's photometry (``photometry_join``).

May import: ``model``, ``data``, ``io`` and the base modules; not ``labels``.
"""

__all__ = ["arrays", "job", "parts", "photometry_join", "predict", "ray_engine", "screening",
           "settings", "workdir"]
