"""Sphinx directives that tabulate the catalog's columns (``io.catalog_schema.SCHEMA``) and the
bits of APNET_FLAG (``io.catalog_flags.FLAG_BITS``) from the one place each is defined, so the
guide always lists what a catalog holds."""

from __future__ import annotations

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def _row(cells: list[str]) -> nodes.row:
    row = nodes.row()
    for text in cells:
        entry = nodes.entry()
        entry += nodes.paragraph(text=text)
        row += entry
    return row


def _table(header: list[str], rows: list[list[str]], widths: list[int]) -> nodes.table:
    group = nodes.tgroup(cols=len(header))
    group += [nodes.colspec(colwidth=w) for w in widths]
    head, body = nodes.thead(), nodes.tbody()
    head += _row(header)
    body += [_row(r) for r in rows]
    group += [head, body]
    table = nodes.table()
    table += group
    return table


class CatalogColumns(SphinxDirective):
    """``.. apnet-tf-columns::``: name, unit, description and source of every column."""

    def run(self) -> list[nodes.Node]:
        from apnet_tf.io.catalog_schema import SCHEMA, SOURCES

        rows = [[c.name, c.unit or "-", c.description, SOURCES.get(c.source, c.source)]
                for c in SCHEMA]
        return [_table(["column", "unit", "description", "source"], rows, [14, 6, 50, 30])]


def flag_rows() -> list[list[str]]:
    """The rows of the flag table: bit, value, name, BAD (yes/no), test (as a catalog header's
    COMMENT card says it) and meaning of every bit."""
    from apnet_tf.io.catalog_flags import FLAG_BITS

    return [[str(b.bit), str(1 << b.bit), b.name, "yes" if b.bad else "no",
             b.test or b.meaning, b.meaning] for b in FLAG_BITS]


class FlagBits(SphinxDirective):
    """``.. apnet-tf-flag-bits::``: bit, value, name, BAD, test (as in a catalog header) and
    meaning of every APNET_FLAG bit."""

    def run(self) -> list[nodes.Node]:
        return [_table(["bit", "value", "name", "BAD", "test", "meaning"], flag_rows(),
                       [4, 6, 18, 4, 34, 34])]


def setup(app):
    app.add_directive("apnet-tf-columns", CatalogColumns)
    app.add_directive("apnet-tf-flag-bits", FlagBits)
    return {"parallel_read_safe": True}
