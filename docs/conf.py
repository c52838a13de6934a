"""Sphinx configuration of the ``ner`` documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (needs the ``docs`` extra).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))
# Any plotting backend import during autodoc must not look for a display.
os.environ.setdefault("MPLBACKEND", "Agg")

import ner  # noqa: E402

project = "ner — Neural Embeddings Rank"
author = "the ner authors"
copyright = "the ner authors"
release = ner.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",          # MyST markdown and notebooks (it loads myst_parser itself)
    "figure_gallery",   # docs/_ext: one page per figure notebook, with its committed PNG
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
root_doc = "index"

# --- MyST and notebooks -------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
# The notebooks are committed without outputs and are never executed here: their figures are the PNGs
# that `ner figures` wrote into figures/, which the gallery pages show.
nb_execution_mode = "off"
nb_merge_streams = True

# --- API reference --------------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "show-inheritance": True,
    # Package __init__ files re-export their submodules' names in __all__; document each object once,
    # on the page of the module that defines it.
    "ignore-module-all": True,
}
autodoc_typehints = "signature"
# False: ner.methods.cebra_baseline.SeededCEBRA sets its own __signature__, which the source does not show.
autodoc_preserve_defaults = False
autodoc_class_signature = "mixed"
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_preprocess_types = False

# Names in signatures and docstrings that point into torch, CEBRA, numpy or scikit-learn are not
# resolved (no intersphinx: the build runs offline). Only checked under `-n`; listed for that case.
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|cebra|np|numpy|sklearn|scipy|pd|pandas|matplotlib|plt)(\..*)?"),
    (r"py:.*", r"(Path|Callable|Iterable|Iterator|Mapping|Literal|optional|array-like|ndarray)"),
]

# --- HTML -----------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"ner {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": True,
}


def _skip_metadata_routing(app, what, name, obj, skip, options):
    """scikit-learn adds ``set_<method>_request`` to every estimator class; they are not ours to document."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_routing)
