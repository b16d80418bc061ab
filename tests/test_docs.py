"""The user guide: it builds with no warning, every ```console example in it runs as written, and
it documents every catalog column."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest
from transcripts import environment, run_steps, transcript, workspace

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SHARED = REPO.parent / "shared"


def pages() -> list[Path]:
    """The guide's pages in the order of index.md's contents."""
    text = (DOCS / "index.md").read_text()
    block = text.split("```{toctree}", 1)[1].split("```", 1)[0]
    names = [line.strip() for line in block.splitlines()
             if line.strip() and not line.strip().startswith(":")]
    return [DOCS / "index.md"] + [DOCS / f"{name}.md" for name in names]


def test_every_page_is_in_the_contents():
    assert sorted(pages()) == sorted(DOCS.glob("*.md"))


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
                           "html", str(DOCS), str(tmp_path / "html")], capture_output=True,
                          text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # the command reference holds every command's help; the catalog page every schema column
    from apnet_tf.cli.app import app
    from apnet_tf.io.catalog_schema import SCHEMA

    cli = (tmp_path / "html" / "cli.html").read_text()
    assert all(f"apnet-tf {c.name}" in cli for c in app.registered_commands if c.name)
    catalog = (tmp_path / "html" / "catalog.html").read_text()
    assert [c.name for c in SCHEMA if not re.search(rf">{c.name}<", catalog)] == []
    from apnet_tf.io.catalog_flags import FLAG_BITS

    assert [b.name for b in FLAG_BITS if f">{b.name}<" not in catalog] == []
    # and each bit's test, as a catalog header's COMMENT card says it
    tests = {b.name: f">{html.escape(b.test, quote=False)}<" for b in FLAG_BITS}
    assert [name for name, cell in tests.items() if cell not in catalog] == []
    if (SHARED / "data" / "apogee_dr13" / "apStar").is_dir():  # the notebook page ran
        notebook = (tmp_path / "html" / "notebook.html").read_text()
        assert "Model('mini_run', runtime='keras'" in notebook
        assert re.search(r'<img alt="[^"]*" src="_images/\w+\.png"', notebook)
        assert "saved_model True True" in notebook and "tflite True True" in notebook


def test_the_guide_runs_enough_examples():
    assert sum(len(transcript(page.read_text())) for page in pages()) >= 10


@pytest.fixture(scope="module")
def guide_folder(tmp_path_factory):
    """The one folder the guide's examples run in, page after page: (work folder, env)."""
    if not (SHARED / "data" / "apogee_dr13" / "apStar").is_dir():
        pytest.skip("the guide's examples read the real files in ../shared/data")
    tmp = tmp_path_factory.mktemp("guide")
    return workspace(tmp, REPO, SHARED), environment(tmp, REPO)


@pytest.mark.slow
@pytest.mark.parametrize("page", pages(), ids=lambda p: p.stem)
def test_docs_examples_run_as_written(page, guide_folder):
    """Every ```console command of the guide, page by page in contents order, in one folder (a
    page may use what an earlier page made: select a page alone with -k only when it makes what
    it uses, as every page does today)."""
    work, env = guide_folder
    run_steps(transcript(page.read_text(), str(page.relative_to(REPO))),
              str(page.relative_to(REPO)), work, env)
