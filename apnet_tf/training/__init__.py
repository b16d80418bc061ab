"""Training, floor 7: recipes (``recipes``) and their TOML files (``recipe_files``), ``fit``
with its two stages (``fitting``), its precision (``precision``), what it trains on and which
network (``inputs``), the rolling Payne resample (``finetuning``), the last layer fitted again at
the end (``last_layer``), callbacks, ``tf.distribute`` strategies (``distribute``) and the run
folder (``run_folder``).

May import, by the layers contract, every floor below; by intent (and a forbidden contract)
only ``model``, ``data``, ``io`` and the base modules: the tables and the calibration that end
``apnet-tf fit`` are chained in ``workflows``.
"""

__all__ = ["callbacks", "distribute", "finetuning", "fitting", "inputs", "last_layer", "precision",
           "recipe_files", "recipes", "run_folder"]
