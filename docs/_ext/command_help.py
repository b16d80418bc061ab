"""A Sphinx directive that prints ``apnet-tf --help`` and each command's ``--help`` as literal
blocks, so the command reference is always what the installed command line says.

(sphinx-click cannot read Typer's own command classes, so the help is taken from the app itself.)
"""

from __future__ import annotations

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def _help(app, args: list[str]) -> str:
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, [*args, "--help"], terminal_width=100)
    if res.exit_code != 0:
        raise RuntimeError(f"apnet-tf {' '.join(args)} --help failed: {res.output}")
    return res.output.replace("Usage: root", "Usage: apnet-tf").rstrip()


class CommandHelp(SphinxDirective):
    """``.. apnet-tf-help::``: the app's help, then a section per command with its help."""

    def run(self) -> list[nodes.Node]:
        from apnet_tf.cli.app import app

        names = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]
        out: list[nodes.Node] = [nodes.literal_block(text=_help(app, []))]
        for name in names:
            section = nodes.section(ids=[f"command-{name}"])
            section += nodes.title(text=f"apnet-tf {name}")
            section += nodes.literal_block(text=_help(app, [name]))
            out.append(section)
        return out


def setup(app):
    app.add_directive("apnet-tf-help", CommandHelp)
    return {"parallel_read_safe": True}
