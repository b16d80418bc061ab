"""Judging a model, floor 6 (beside ``export``): the paper's Tables 2 and 3, coverage per category
and S/N tercile, ``evaluate`` (``tables``) and the PNG figures (``plots``, the YSO sky map in
``sky_map``).

May import: ``calibration``, ``inference``, ``labels``, ``model``, ``data``, ``io`` and the base
modules; not ``export``.
"""

__all__ = ["plots", "sky_map", "tables"]
