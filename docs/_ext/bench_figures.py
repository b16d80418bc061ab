"""Sphinx roles that print the benchmarks' figures from ``bench/results/<script>.json``, so a page
never types a figure that a results file holds (``tests/test_docs_figures.py`` checks that none
does).

``{bench}`NAME:PATH[;SPEC]```: one figure (``bench/md/_render.py``'s ``figure``: PATH the keys
under ``figures`` joined by ``/``; a list prints as its range; SPEC a format such as ``.2f``,
or ``code`` for a string figure printed as code).
``{bench-recipe}`NAME```: the recipe its network trained with, in the words of BENCHMARKS.md
("today's default recipe" only while it is).
A reference that names no results file or no key is an error, which ``-W`` makes fatal.
"""

from __future__ import annotations

import os
import sys

from docutils import nodes

BENCH = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "bench"))


def _bench_render():
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    from md import _render

    return _render


def _role(render):
    def role(name, rawtext, text, lineno, inliner, options=None, content=None):
        env = inliner.document.settings.env
        env.note_dependency(os.path.join(BENCH, "results", text.split(":")[0].strip() + ".json"))
        try:
            shown = render(_bench_render(), text)
        except (KeyError, IndexError, ValueError, TypeError) as e:
            msg = inliner.reporter.error(f"{{{name}}}`{text}`: {e}", line=lineno)
            return [inliner.problematic(rawtext, rawtext, msg)], [msg]
        if text.rstrip().endswith(";code"):
            return [nodes.literal(text=shown)], []
        return [nodes.Text(shown)], []

    return role


def _recipe(md, text: str) -> str:
    rec = md.load(text.strip())
    if rec is None:
        raise KeyError(f"no bench/results/{text.strip()}.json")
    return md.recipe_words(rec)


def setup(app):
    app.add_role("bench", _role(lambda md, text: md.figure(text)))
    app.add_role("bench-recipe", _role(_recipe))
    return {"parallel_read_safe": True}
