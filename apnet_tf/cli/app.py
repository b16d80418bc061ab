"""The ``apnet-tf`` command line. It parses arguments and calls library functions, nothing more.

The commands live in ``data_commands`` (synth, make-records, make-labels, yso-train, yso-labels)
and ``model_commands`` (fit, demo, infer, calibrate, evaluate, export, import-torch); their shared
option types in ``options``, their consoles, error wrapper and progress bars in ``support``. This
module makes the Typer app and registers the commands in the order ``--help`` lists them.
"""

from __future__ import annotations

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
from apnet_tf.cli.support import MANY_PATHS

__all__ = ["app", "main"]

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
