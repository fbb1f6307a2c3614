"""Sphinx configuration for sknw's documentation."""

import os
import re
import sys

import sknw

project = "sknw"
copyright = "the sknw developers"
version = release = sknw.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # MathJax from the docs extra, copied into _static: no script from the network.
    "sphinx-mathjax-offline",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
autodoc_default_options = {"members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

templates_path = ["_templates"]
exclude_patterns = ["_build", "generated/*.examples"]
html_theme = "alabaster"

os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, os.path.dirname(__file__))  # _gallery_order
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/(plot_|quickstart)",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "_gallery_order.GalleryOrder",
    # Its page of run times loads DataTables from a CDN: these pages stay offline.
    "write_computation_times": False,
}


# The methods inherited from scikit-learn (``score``) link to labels of
# scikit-learn's own user guide, which these pages do not hold: keep the text.
_SKLEARN_LABELS = re.compile(r":ref:`([^`<]*?)\s*<(accuracy_score|r2_score)>`")


def _unlink_sklearn_labels(app, what, name, obj, options, lines):
    lines[:] = [_SKLEARN_LABELS.sub(r"\1", line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _unlink_sklearn_labels)
