"""The ``apnet-tf`` command line. It parses arguments and calls library functions, nothing more.

The commands live in ``cli_data`` (synth, make-records, make-labels, yso-train, yso-labels) and
``cli_models`` (fit, demo, infer, calibrate, evaluate, export, import-torch); their shared option
types in ``cli_options``, their consoles, error wrapper and progress bars in ``cli_support``. This
module makes the Typer app and registers the commands in the order ``--help`` lists them.
"""

from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter is not for users of a command line.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import typer  # noqa: E402

from .cli_data import make_labels_cmd, make_records_cmd, synth, yso_labels_cmd  # noqa: E402
from .cli_data import yso_train_cmd  # noqa: E402
from .cli_models import (calibrate, demo, evaluate, export, fit_cmd, import_torch_cmd,  # noqa: E402
                         infer)
from .cli_support import MANY_PATHS, console, out, progress_bar  # noqa: E402, F401
from .cli_support import friendly as _friendly  # noqa: E402, F401 (the name tests import)

# rich_markup_mode=None: plain help, so square brackets in help texts print as written.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="APOGEE Net in TensorFlow: from apStar FITS files to a stellar-parameter "
                       "catalog.")

app.command()(synth)
app.command("make-records", context_settings=MANY_PATHS)(make_records_cmd)
app.command("fit")(fit_cmd)
app.command()(demo)
app.command("make-labels")(make_labels_cmd)
app.command("yso-train")(yso_train_cmd)
app.command("yso-labels")(yso_labels_cmd)
app.command(context_settings=MANY_PATHS)(infer)
app.command()(calibrate)
app.command()(evaluate)
app.command()(export)
app.command("import-torch")(import_torch_cmd)


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
