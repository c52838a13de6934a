"""Labelled batches, the loader that draws them, and the solver that ranks them.

CEBRA's batches carry inputs only and its solver calls criterions as
``criterion(ref, pos, neg)``. NER's loss needs the reference labels instead of
negatives, so these three subclasses carry labels from the loader to the loss.
"""

from __future__ import annotations

from typing import Literal

import cebra.data
import cebra.distributions
import literate_dataclasses as dataclasses
import torch
from cebra.data.datatypes import Batch, BatchIndex
from cebra.solver import register
from cebra.solver.single_session import SingleSessionSolver

from ner.sampling import ExactTimedeltaDistribution, seed_distributions


class LabelledBatch(Batch):
    """Reference and positive samples with their labels; no negatives.

    ``positive_labels`` is None where positives take their reference's labels.
    """

    __slots__ = ["labels", "positive_labels"]

    def __init__(self, reference, positive, labels, positive_labels):
        super().__init__(reference, positive, negative=None)
        self.labels = labels
        self.positive_labels = positive_labels

    def to(self, device):
        for name in ("reference", "positive", "labels", "positive_labels"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))


@dataclasses.dataclass
class RankLoader(cebra.data.ContinuousDataLoader):
    """Uniform references, ``time_delta`` positives searched on some label columns."""

    search_columns: tuple = dataclasses.field(
        default=(0, 1), doc="Label columns the positive search runs on.")
    positive_labels: Literal["reference", "own"] = dataclasses.field(
        default="reference",
        doc="Whether a positive is ranked by its reference's labels (the paper) "
        "or by its own.")
    exact_search: bool = dataclasses.field(
        default=True, doc="KD-tree search; False uses CEBRA's dense search.")
    seed: int = dataclasses.field(default=None, doc="Seed for the sampling.")

    def _init_distribution(self):
        if self.positive_labels not in ("reference", "own"):
            raise ValueError("positive_labels must be 'reference' or 'own', "
                             f"got {self.positive_labels!r}.")
        index = self.dataset.continuous_index[:, list(self.search_columns)]
        if self.exact_search:
            self.distribution = ExactTimedeltaDistribution(
                index, self.time_offset, device=self.device, seed=self.seed)
        else:
            self.distribution = cebra.distributions.TimedeltaDistribution(
                index, self.time_offset, device=self.device)
            seed_distributions(self.distribution, self.seed)

    def get_indices(self, num_samples: int) -> BatchIndex:
        reference = self.distribution.sample_prior(num_samples)
        positive = self.distribution.sample_conditional(reference)
        return BatchIndex(reference=reference, positive=positive, negative=None)

    def __iter__(self):
        labels = self.dataset.continuous_index
        for _ in range(len(self)):
            index = self.get_indices(self.batch_size)
            own = self.positive_labels == "own"
            yield LabelledBatch(
                reference=self.dataset[index.reference],
                positive=self.dataset[index.positive],
                labels=labels[index.reference],
                positive_labels=labels[index.positive] if own else None,
            )


@register("ner-single-session")
class RankSolver(SingleSessionSolver):
    """Single-session solver whose criterion ranks labelled reference/positive pairs."""

    _variant_name = "ner-single-session"

    def _inference(self, batch: LabelledBatch) -> LabelledBatch:
        batch.to(self.device)
        # One pass over references and positives together.
        both = self.model(torch.cat([batch.reference, batch.positive]))
        reference, positive = both.split(len(batch.reference))
        return LabelledBatch(reference, positive, batch.labels, batch.positive_labels)

    def step(self, batch: LabelledBatch) -> dict:
        self.optimizer.zero_grad()
        prediction = self._inference(batch)
        loss = self.criterion(prediction.reference, prediction.positive,
                              prediction.labels, prediction.positive_labels)
        loss.backward()
        self.optimizer.step()
        self.history.append(loss.item())
        stats = dict(total=loss.item(), temperature=self.criterion.temperature)
        for key, value in stats.items():
            self.log[key].append(value)
        return stats
