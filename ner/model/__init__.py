"""The NER model on CEBRA's seams: the rank loss, positive sampling, the loader, the solver, the estimator."""

from ner.model.estimator import NER
from ner.model.loss import LabelDistance, RankLoss, rank_loss

__all__ = ["NER", "LabelDistance", "RankLoss", "rank_loss"]
