"""Labelled batches and the loader that draws them.

CEBRA's batches carry inputs only; NER's loss needs the reference labels instead of
negatives, so this batch and loader carry labels on to the solver
(:mod:`ner.model.solver`).
"""

from __future__ import annotations

from typing import Literal

import cebra.data
import cebra.distributions
import literate_dataclasses as dataclasses
from cebra.data.datatypes import Batch, BatchIndex

from ner.model.sampling import ExactTimedeltaDistribution, seed_distributions


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

    def generators(self) -> list:
        """The torch generators the loader samples with (their states resume a fit)."""
        return [self.distribution.generator, self.distribution.prior.generator]

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
