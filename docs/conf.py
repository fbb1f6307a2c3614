"""Sphinx configuration for sknw's documentation."""

import os

import sknw

project = "sknw"
copyright = "the sknw developers"
version = release = sknw.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
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
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/(plot_|quickstart)",
    "download_all_examples": False,
    "remove_config_comments": True,
}
