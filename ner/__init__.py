"""Neural Embeddings Rank: 3-D latent dynamics aligned with movement, on stock CEBRA."""

from ner.estimator import NER
from ner.loss import LabelDistance, RankLoss, rank_loss

__all__ = ["NER", "RankLoss", "LabelDistance", "rank_loss", "load_session"]
__version__ = "0.1.0"


def __getattr__(name):
    # ner.data pulls scipy.io and pooch; load it only when asked for.
    if name == "load_session":
        from ner.data import load_session
        return load_session
    raise AttributeError(f"module 'ner' has no attribute {name!r}")
