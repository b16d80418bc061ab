"""Help panels for the plain help of ``apnet-tf``: each command lists what everyone needs under
``Options``, then the rest in panels (``Training recipe``, ``Performance``, ``Advanced``), and
``apnet-tf --help`` lists the commands in panels.

Typer draws ``rich_help_panel`` only in its rich help, which would read square brackets in help
texts as markup; the app keeps plain help (``rich_markup_mode=None``), so these two classes draw
the panels in Click's plain formatter, the texts printed as written.
"""

from __future__ import annotations

import typer.core

__all__ = ["RECIPE", "PERFORMANCE", "ADVANCED", "LABELS", "MODELS", "PanelledCommand",
           "PanelledGroup"]

# The panels after a command's Options, in the order they print.
RECIPE = "Training recipe"
PERFORMANCE = "Performance"
ADVANCED = "Advanced"
# The panels of ``apnet-tf --help`` after its Commands.
LABELS = "Training labels"
MODELS = "More on models"
_OPTIONS, _COMMANDS = "Options", "Commands"


#: Click's widest first column of a help list; longer terms put their help on the next line.
_COL_MAX = 30


def _write_panels(formatter, rows, first: str) -> None:
    """Write ``(panel, (term, help))`` rows as sections: ``first`` (rows without a panel), then
    the panels in the order of their first row, every panel's help in one column."""
    panels: dict[str, list] = {first: []}
    for panel, row in rows:
        panels.setdefault(panel or first, []).append(row)
    width = min(max(len(term) for _, (term, _) in rows), _COL_MAX)
    for name, panel_rows in panels.items():
        if panel_rows:
            with formatter.section(name):
                formatter.write_dl([(term.ljust(width) if text else term, text)
                                    for term, text in panel_rows],
                                   col_max=_COL_MAX)


class PanelledCommand(typer.core.TyperCommand):
    """A command whose ``--help`` lists its options by ``rich_help_panel``."""

    def format_options(self, ctx, formatter) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append(record)
            else:
                opts.append((getattr(param, "rich_help_panel", None), record))
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        if opts:
            _write_panels(formatter, opts, _OPTIONS)


class PanelledGroup(typer.core.TyperGroup):
    """The app: ``apnet-tf --help`` lists the commands by their ``rich_help_panel``."""

    def format_commands(self, ctx, formatter) -> None:
        commands = [(name, self.get_command(ctx, name)) for name in self.list_commands(ctx)]
        commands = [(name, cmd) for name, cmd in commands if cmd is not None and not cmd.hidden]
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        rows = [(getattr(cmd, "rich_help_panel", None), (name, cmd.get_short_help_str(limit)))
                for name, cmd in commands]
        _write_panels(formatter, rows, _COMMANDS)
