"""Sphinx configuration of the apnet-tf user guide (``pip install ".[docs]"``, then
``sphinx-build -W -b html docs docs/_build``; ``tests/test_docs.py`` builds it with warnings as
errors)."""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "_ext")))
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import apnet_tf  # noqa: E402

project = "apnet-tf"
author = "the apnet-tf developers"
release = apnet_tf.__version__
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "command_help",
              "catalog_columns", "bench_figures"]
source_suffix = {".md": "markdown"}
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
