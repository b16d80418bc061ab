"""The networks, floor 3: the Appendix B network with its layers and loss (``network``), the one
Monte Carlo (``uncertainty``), calibration.json and how it turns a Monte Carlo sigma into a
calibrated one (``calibration``), one runtime per way of running a model behind one protocol
(``runtime``: ``keras_runtime``, ``saved_model_runtime``, ``tflite_runtime``) and loading the
right one (``loading``), PyTorch weight exchange (``torch_weights``; the layouts it reads,
recognised by their keys and shapes, ``torch_layouts``; ``.pt`` files, ``torch_files``;
``torch_reference``), the published APOGEE Net I and II networks and their conventions
(``published``), APOGEE Net III and BOSS Net (``bossnet``; their conventions
``bossnet_conventions``, strict weight loading ``bossnet_weights``, their authors' Monte Carlo
``bossnet_mc``), each published network's own cleaning of a file's pixels (``network_inputs``),
bfloat16 hardware and a model's bfloat16 twin for inference (``precision``), where a spectrum
lies among the training stars (``novelty``).

May import: ``data``, ``io`` and the base modules.
"""

__all__ = ["bossnet", "bossnet_conventions", "bossnet_mc", "bossnet_weights", "calibration",
           "keras_runtime", "loading", "network", "network_inputs", "novelty", "precision",
           "published", "runtime", "saved_model_runtime", "tflite_runtime", "torch_files",
           "torch_layouts", "torch_reference", "torch_weights", "uncertainty"]
