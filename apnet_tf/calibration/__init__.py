"""Fitting the sigma calibration from Monte Carlo residuals, floor 5: shape on the train split,
level on dev (``fit``), each from a seeded, stratified subset of its stars (``subset``), and the
novelty reference made where the calibration is (``reference``). Applying a calibration is
``model.calibration``'s, since every model path needs it.

May import: ``inference``, ``model``, ``data``, ``io`` and the base modules.
"""

__all__ = ["fit", "reference", "subset"]
