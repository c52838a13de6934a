"""Multi-session NER: one encoder per session into one latent space, trained with the rank loss.

:class:`MultiSessionRankLoader` draws a batch from every session; the registered
``ner-multi-session`` solver (:class:`MultiSessionRankSolver`) embeds each through its own encoder,
flattens them into one batch and ranks every reference against the positives of all sessions by label
distance. :class:`AnchorLoader` and :class:`AnchoredSolver` fit the encoder of a session held out of
training into that latent space (:meth:`ner.NER.add_session <ner.model.estimator.NER.add_session>`).

Positives follow CEBRA's ``time_delta`` rule: the sample whose labels lie nearest to
``labels[t] + (labels[s] - labels[s - time_delta])``, searched either in another session
(``"across"``, as :class:`cebra.distributions.MultisessionSampler`) or in the reference's own
(``"within"``, as the single-session :class:`~ner.model.loader.RankLoader`).
"""

from __future__ import annotations

from typing import Literal

import cebra.data
import cebra.distributions
import literate_dataclasses as dataclasses
import torch
from cebra.data.datatypes import BatchIndex
from cebra.solver import register
from cebra.solver.multi_session import MultiSessionSolver

from ner.model.loader import LabelledBatch, RankLoader
from ner.model.sampling import KDTreeIndex
from ner.model.solver import RankSolver

#: At most this many frozen training samples per session anchor :meth:`ner.NER.add_session`.
MAX_ANCHORS_PER_SESSION = 4096


class MultiSessionBatch:
    """One :class:`~ner.model.loader.LabelledBatch` per session (its references, and the positives
    drawn from it) and ``order``: for each reference of the flattened batch, the flat position of
    its positive."""

    __slots__ = ["sessions", "order"]

    def __init__(self, sessions: list[LabelledBatch], order: torch.Tensor):
        self.sessions = sessions
        self.order = order


@dataclasses.dataclass
class MultiSessionRankLoader(cebra.data.ContinuousMultiSessionDataLoader):
    """``batch_size`` uniform references per session, ``time_delta`` positives across or within sessions.

    Session ``s`` samples with a :class:`~ner.model.loader.RankLoader` seeded with ``seed + 2 s``
    (its time_delta distribution and its prior); for ``"across"``, the session each positive is
    searched in is drawn with ``seed + 2 k``, for k sessions.
    """

    search_columns: tuple = dataclasses.field(
        default=(0, 1), doc="Label columns the positive search runs on.")
    positives: Literal["across", "within"] = dataclasses.field(
        default="across",
        doc="``across``: each positive lies in another session than its reference (CEBRA's "
        "multi-session rule, which may also pick the same one); ``within``: in the same session.")
    positive_labels: Literal["reference", "own"] = dataclasses.field(
        default="reference",
        doc="Whether a positive is ranked by its reference's labels (the paper) or by its own.")
    exact_search: bool = dataclasses.field(
        default=True, doc="KD-tree search; False uses CEBRA's dense search.")
    seed: int = dataclasses.field(default=None, doc="Seed for the sampling.")

    def __post_init__(self):
        # Not the parent's: CEBRA's MultisessionSampler draws from numpy's global generator and
        # searches every label column (CEBRA's discrete multi-session loader replaces it too).
        cebra.data.Loader.__post_init__(self)
        if self.positives not in ("across", "within"):
            raise ValueError("multisession_positives must be 'across' or 'within', "
                             f"got {self.positives!r}.")
        count = self.dataset.num_sessions
        if self.positives == "across" and count < 2:
            raise ValueError("multisession_positives='across' draws positives from another "
                             f"session, but there is {count}; pass two or more, or use 'within'.")
        self.sessions = [
            RankLoader(dataset=session, batch_size=self.batch_size, num_steps=self.num_steps,
                       time_offset=self.time_offset, search_columns=self.search_columns,
                       positive_labels=self.positive_labels, exact_search=self.exact_search,
                       seed=None if self.seed is None else self.seed + 2 * number)
            for number, session in enumerate(self.dataset.iter_sessions())]
        # CEBRA's multi-session rule: the differences of every session, pooled.
        self.differences = torch.cat([_differences(session.distribution)
                                      for session in self.sessions])
        self.shifts = _generator(None if self.seed is None else self.seed + 2 * count)

    def generators(self) -> list:
        """The torch generators the loader samples with (their states resume a fit)."""
        return [generator for session in self.sessions for generator in session.generators()] + [self.shifts]

    def get_indices(self, num_samples: int) -> BatchIndex:
        """References and positives, each (sessions, num_samples) indices into their session;
        ``index_reversed`` maps each flat reference to its positive's flat position."""
        count = len(self.sessions)
        if self.positives == "within":
            indices = [session.get_indices(num_samples) for session in self.sessions]
            return BatchIndex(
                reference=torch.stack([index.reference for index in indices]),
                positive=torch.stack([index.positive for index in indices]),
                negative=None, index=None,
                index_reversed=torch.arange(count * num_samples))
        reference = torch.stack([session.distribution.sample_prior(num_samples)
                                 for session in self.sessions])
        query = torch.stack([_query(session.distribution, ref, self.differences)
                             for session, ref in zip(self.sessions, reference)])
        # Column b's k queries go round the sessions by one shift in 1..k-1: every positive lies
        # in another session than its reference, and each session gets num_samples of them.
        shift = torch.randint(1, count, (num_samples,), generator=self.shifts)
        sessions, column = torch.arange(count)[:, None], torch.arange(num_samples)
        source = (sessions - shift) % count  # whose query session t answers at column b
        positive = torch.stack([
            self.sessions[target].distribution.index.search(query[source[target], column])
            for target in range(count)])
        order = ((sessions + shift) % count) * num_samples + column
        return BatchIndex(reference=reference, positive=positive, negative=None, index=None,
                          index_reversed=order.flatten())

    def __iter__(self):
        own = self.positive_labels == "own"
        for _ in range(len(self)):
            index = self.get_indices(self.batch_size)
            batches = []
            for session, reference, positive in zip(self.sessions, index.reference, index.positive):
                labels = session.dataset.continuous_index
                batches.append(LabelledBatch(
                    reference=session.dataset[reference], positive=session.dataset[positive],
                    labels=labels[reference], positive_labels=labels[positive] if own else None))
            yield MultiSessionBatch(batches, index.index_reversed)


@register("ner-multi-session")
class MultiSessionRankSolver(MultiSessionSolver):
    """Multi-session solver: each session through its encoder, then the rank loss over all of them."""

    _variant_name = "ner-multi-session"

    # The single-session step: the rank loss on one labelled batch, here the flattened one.
    step = RankSolver.step

    def _inference(self, batch: MultiSessionBatch) -> LabelledBatch:
        references, positives = [], []
        for session, model in zip(batch.sessions, self.model):
            session.to(self.device)
            both = model(torch.cat([session.reference, session.positive]))
            reference, positive = both.split(len(session.reference))
            references.append(reference)
            positives.append(positive)
        order = batch.order.to(self.device)
        own = batch.sessions[0].positive_labels is not None
        return LabelledBatch(
            torch.cat(references), torch.cat(positives)[order],
            torch.cat([session.labels for session in batch.sessions]),
            torch.cat([session.positive_labels for session in batch.sessions])[order] if own else None)


@dataclasses.dataclass
class AnchorLoader(RankLoader):
    """References from a new session; positives among frozen anchors of a trained latent space.

    A positive is the anchor whose labels lie nearest to the reference's plus a ``time_delta``
    difference of the new session (the one session with a time course here); it is ranked by its
    own labels, the anchors being other sessions' samples.
    """

    anchor_embeddings: torch.Tensor = dataclasses.field(
        default=None, doc="Frozen embeddings of the anchors, (n, output dimension).")
    anchor_labels: torch.Tensor = dataclasses.field(
        default=None, doc="The anchors' labels, (n, label columns).")

    def _init_distribution(self):
        super()._init_distribution()
        anchors = self.anchor_labels[:, list(self.search_columns)]
        self.anchor_index = (KDTreeIndex(anchors) if self.exact_search
                             else cebra.distributions.ContinuousIndex(anchors))

    def get_indices(self, num_samples: int) -> BatchIndex:
        """References into the new session, positives into the anchors."""
        reference = self.distribution.sample_prior(num_samples)
        query = _query(self.distribution, reference, _differences(self.distribution))
        return BatchIndex(reference=reference, positive=self.anchor_index.search(query),
                          negative=None)

    def __iter__(self):
        labels = self.dataset.continuous_index
        for _ in range(len(self)):
            index = self.get_indices(self.batch_size)
            yield LabelledBatch(
                reference=self.dataset[index.reference],
                positive=self.anchor_embeddings[index.positive],
                labels=labels[index.reference],
                positive_labels=self.anchor_labels[index.positive])


class AnchoredSolver(RankSolver):
    """Trains one encoder against fixed positive embeddings (:class:`AnchorLoader`'s anchors)."""

    _variant_name = "ner-anchored"

    def _inference(self, batch: LabelledBatch) -> LabelledBatch:
        batch.to(self.device)
        return LabelledBatch(self.model(batch.reference), batch.positive, batch.labels,
                             batch.positive_labels)


def _differences(distribution) -> torch.Tensor:
    """A time_delta distribution's differences ``labels[s] - labels[s - time_delta]``, without the
    first ``time_delta`` rows, which CEBRA leaves zero."""
    return distribution.time_difference[distribution.time_delta:]


def _query(distribution, reference: torch.Tensor, differences: torch.Tensor) -> torch.Tensor:
    """The time_delta query: each reference's labels plus one of ``differences`` drawn with the
    distribution's generator (otherwise unused where positives are searched elsewhere)."""
    step = distribution.randint(len(differences), (len(reference),))
    return distribution.data[reference] + differences[step]


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()  # a fresh stream, not torch's fixed default
    else:
        generator.manual_seed(seed)
    return generator
