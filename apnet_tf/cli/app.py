"""The ``apnet-tf`` command line. It parses arguments and calls library functions, nothing more.

The commands live in ``data_commands`` (synth, make-records, make-labels, yso-train, yso-labels)
and ``model_commands`` (fit, demo, infer, calibrate, evaluate, export, import-torch); their shared
option types in ``options``, their consoles, error wrapper and progress bars in ``support``. This
module makes the Typer app and registers the commands in the order ``--help`` lists them.
"""

from __future__ import annotations

import functools

import typer

from apnet_tf.cli.data_commands import (
    make_labels_cmd,
    make_records_cmd,
    synth,
    yso_labels_cmd,
    yso_train_cmd,
)
from apnet_tf.cli.model_commands import (
    calibrate,
    demo,
    evaluate,
    export,
    fit_cmd,
    import_torch_cmd,
    infer,
)
from apnet_tf.cli.panels import LABELS, MODELS, PanelledCommand, PanelledGroup
from apnet_tf.cli.support import MANY_PATHS

__all__ = ["app", "main"]

# rich_markup_mode=None: plain help, so square brackets in help texts print as written; the
# panels are drawn by cli.panels.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  cls=PanelledGroup,
                  help="APOGEE Net in TensorFlow: from apStar FITS files to a stellar-parameter "
                       "catalog.")
command = functools.partial(app.command, cls=PanelledCommand)

command()(synth)
command("make-records", context_settings=MANY_PATHS)(make_records_cmd)
command("fit")(fit_cmd)
command()(demo)
command("make-labels", rich_help_panel=LABELS)(make_labels_cmd)
command("yso-train", rich_help_panel=LABELS)(yso_train_cmd)
command("yso-labels", rich_help_panel=LABELS)(yso_labels_cmd)
command(context_settings=MANY_PATHS)(infer)
command(rich_help_panel=MODELS)(calibrate)
command(rich_help_panel=MODELS)(evaluate)
command(rich_help_panel=MODELS)(export)
command("import-torch", rich_help_panel=MODELS)(import_torch_cmd)

def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
