"""The networks, floor 3: the Appendix B network with its layers and loss (``network``), the one
Monte Carlo (``uncertainty``), calibration.json and how it turns a Monte Carlo sigma into a
calibrated one (``calibration``), loading any model kind with its calibration (``loading``) and
PyTorch weight exchange (``torch_weights``, ``torch_reference``).

May import: ``data``, ``io`` and the base modules.
"""

__all__ = ["calibration", "loading", "network", "torch_reference", "torch_weights", "uncertainty"]
