"""Sphinx configuration of the apnet-tf user guide (``pip install ".[docs]"``, then
``sphinx-build -W -b html docs docs/_build``; ``tests/test_docs.py`` builds it with warnings as
errors)."""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "_ext")))
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# the notebook page's kernel imports this checkout too, installed or not
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (REPO, os.environ.get("PYTHONPATH")) if p)

import apnet_tf  # noqa: E402

project = "apnet-tf"
author = "the apnet-tf developers"
copyright = f"2026, {author}"  # the footer: "© Copyright 2026, the apnet-tf developers"
# no "smart" typography: "--table" in a column description must stay two hyphens to be copied
smartquotes = False
release = apnet_tf.__version__
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "command_help",
              "catalog_columns", "bench_figures"]
source_suffix = {".md": "myst-nb"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"apnet-tf {release}"
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_mock_imports = ["torch", "ray"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
suppress_warnings = ["myst.header"]

# The notebook page (notebook.md) runs its cells at every build, on the real DR13 files in
# ../shared/data; without them it is shown unrun. A cell that fails fails the build.
nb_execution_mode = ("force" if os.path.isdir(os.path.join(REPO, "..", "shared", "data"))
                     else "off")
nb_execution_raise_on_error = True
nb_execution_timeout = 900
nb_output_stderr = "remove"  # TensorFlow's start-up lines, not the page's
