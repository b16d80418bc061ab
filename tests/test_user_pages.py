"""The guide's pages are for users: no project history, issue numbers or test-harness rules
outside docs/development.md; the catalog page renders options as typed and the footer names
who holds the copyright."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
#: What belongs in development.md only: issue numbers, the tests that check the pages.
HISTORY = re.compile(r"\bissues? \d+|\bissue #|tests/test_\w+\.py|test harness|"
                     r"How the examples are checked|docs check|test machines", re.IGNORECASE)


def _shown(text: str) -> str:
    """The page as rendered: without the HTML comments (the transcripts' tolerances)."""
    return re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)


def test_no_user_page_carries_project_history_or_harness_rules():
    """The home page opened with how the examples are checked; the worked example repeated it;
    the published-networks page told of the import before issue 19."""
    found = [f"{page.name}: {m.group(0)}" for page in sorted(DOCS.glob("*.md"))
             if page.name != "development.md"
             for m in HISTORY.finditer(_shown(page.read_text()))]
    assert found == []
    dev = (DOCS / "development.md").read_text()
    assert "How the examples are checked" in dev
    assert "**What the whole suite takes.** Measured" in dev
    assert "TODO" not in dev


def test_the_home_page_leads_with_what_it_does_and_the_shortest_path():
    text = (DOCS / "index.md").read_text()
    head = text[:text.index("```{toctree}")]
    assert "apnet-tf import-torch" in head and "apnet-tf infer" in head


def test_the_guide_keeps_double_hyphens_and_names_the_copyright_holder():
    """Sphinx's smart quotes rendered `(infer --table)` in the column table as an en dash, and
    the footer said "Copyright ©" with no name."""
    conf = runpy.run_path(str(DOCS / "conf.py"))
    assert conf["smartquotes"] is False
    assert conf["author"] in conf["copyright"] and re.search(r"\b20\d\d\b", conf["copyright"])


def test_catalog_columns_in_the_order_files_hold_them_and_no_dangling_reference():
    from apnet_tf.io.catalog_schema import SCHEMA

    names = [c.name for c in SCHEMA]
    assert names.index("PHOT_FILLED") < names.index("FILE")
    flag = next(c for c in SCHEMA if c.name == "APNET_FLAG")
    assert "README" not in flag.description and "FLAG_BITS" not in flag.description
    for c in SCHEMA:  # MCVALUE is in every catalog's header now, so it may be promised
        assert "MC mean/median" not in c.description
