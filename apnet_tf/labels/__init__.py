"""Training labels from other catalogues, floor 4 (beside ``inference``): the Payne rule and the
M-dwarf photometric relations (``photometric``), isochrones (``isochrones``, ``toy_isochrones``)
and the photometric YSO network with its labels (``yso``, ``yso_labels``).

May import: ``model``, ``data``, ``io`` and the base modules; not ``inference``.
"""

__all__ = ["isochrones", "photometric", "toy_isochrones", "yso", "yso_labels"]
