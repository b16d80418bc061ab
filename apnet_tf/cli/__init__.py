"""The ``apnet-tf`` command line, floor 9: the Typer app (``app``), its commands
(``data_commands``, ``model_commands``), their option types (``options``), the help panels that
group them (``panels``) and their consoles, one-line errors and progress bars (``support``). It parses arguments and calls library
functions; every command is a documented function below it.

May import: everything. The commands import the library inside their bodies, so that
``apnet-tf --help`` never imports TensorFlow.
"""

import os

# TensorFlow's C++ start-up chatter is not for users of a command line.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["app", "data_commands", "model_commands", "options", "panels", "support"]
