"""Neural Embeddings Rank: 3-D latent dynamics aligned with movement, on stock CEBRA.

Names load on first use, so that ``import ner.data`` does not pull torch and CEBRA.
"""

import importlib

__version__ = "0.2.0"

_NAMES = {
    "NER": "ner.model",
    "RankLoss": "ner.model",
    "LabelDistance": "ner.model",
    "rank_loss": "ner.model",
    "LabelLayout": "ner.data.labels",
    "PAPER_LAYOUT": "ner.data.labels",
    "load_session": "ner.data",
}
_SUBPACKAGES = ("data", "model", "methods", "evaluation", "reference", "workflow", "viz")

__all__ = [*_NAMES, *_SUBPACKAGES]


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"ner.{name}")
    raise AttributeError(f"module 'ner' has no attribute {name!r}")
