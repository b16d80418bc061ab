"""A Sphinx directive that tabulates the catalog's columns from ``io.catalog_schema.SCHEMA``, the
one place they are defined, so the guide always lists what a catalog holds."""

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


def setup(app):
    app.add_directive("apnet-tf-columns", CatalogColumns)
    return {"parallel_read_safe": True}
