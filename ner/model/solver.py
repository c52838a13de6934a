"""The registered ``ner-single-session`` solver: CEBRA's training loop with the rank loss.

CEBRA's solver calls criterions as ``criterion(ref, pos, neg)``; this one hands the loss the
labels that :class:`~ner.model.loader.LabelledBatch` carries instead of negatives.
"""

from __future__ import annotations

import torch
from cebra.solver import register
from cebra.solver.single_session import SingleSessionSolver

from ner.model.loader import LabelledBatch


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
