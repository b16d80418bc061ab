"""Models for other runtimes, floor 6 (beside ``evaluation``): the SavedModel with its three
signatures for TF Serving and the TFLite variants for LiteRT (``model_export``).

May import: ``calibration``, ``inference``, ``labels``, ``model``, ``data``, ``io`` and the base
modules; not ``evaluation``.
"""

__all__ = ["model_export"]
