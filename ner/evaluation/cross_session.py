"""Cross-session decoding matrices.

Entry ``[i, j]`` scores the decoder trained on session ``i`` (its training split) on the test
split of session ``j``, after aligning ``j``'s embedding onto ``i``'s (or, for embeddings that already
share one latent space, as a multi-session model's do, with no alignment: ``align=False``). The
diagonal is the same-session held-out test, with no alignment.

The alignment is :func:`~ner.evaluation.alignment.fit_alignment` on training-trial averages of both
sessions, and R^2 is ``r2_score(truth, prediction)`` (the corrected protocol). The original's protocol
(per-direction rotations picked by rounding noise, fitted on all trials, swapped velocity R^2) is
:func:`ner.reference.legacy.legacy_cross_session`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ner.data.labels import check_paired
from ner.evaluation.alignment import fit_alignment
from ner.evaluation.decoding import DEFAULT_KNN_GRID, SCORES, TrialDecoder, score_trials
from ner.evaluation.trials import trial_averages

__all__ = ["SplitEmbedding", "session_averages", "pair_alignment", "cross_session_matrices"]


@dataclass
class SplitEmbedding:
    """One session's embedding and labels, split into whole training and test trials."""

    train_embedding: np.ndarray
    train_labels: np.ndarray
    test_embedding: np.ndarray
    test_labels: np.ndarray


def session_averages(session: SplitEmbedding, trial_length) -> np.ndarray:
    """Per-direction averages of the training trials: what the alignment is fitted on."""
    return trial_averages(session.train_embedding, session.train_labels, trial_length)


def pair_alignment(source_averages, anchor_averages):
    """The map from a tested session onto the training session's space."""
    return fit_alignment(source_averages, anchor_averages)


def cross_session_matrices(
    sessions: dict,
    trial_length,
    method="linear",
    knn_grid=DEFAULT_KNN_GRID,
    cv=5,
    decoders=None,
    align: bool = True,
) -> dict:
    """n x n decoding matrices over ``sessions`` (a dict name -> :class:`SplitEmbedding`).

    ``decoders`` may map session names to :class:`TrialDecoder` already fitted on their
    training split, to reuse them (``method``, ``knn_grid`` and ``cv`` then apply to the rest).
    ``align=False`` scores every test split as it is embedded: no test trial reaches anything but
    the decoder's scoring, and ``alignments`` is empty.

    Returns ``names``, ``velocity_r2``, ``position_r2``, ``peak_accuracy`` (n x n; accuracy as a
    fraction), ``accuracy_per_bin`` (n x n x trial_length) and ``alignments`` (dict
    ``(train_name, test_name) -> Alignment``).
    """
    if len(sessions) < 1:
        raise ValueError("cross_session_matrices needs at least one session.")
    names = list(sessions)
    for name, session in sessions.items():
        check_paired(session.train_embedding, session.train_labels, trial_length, f"{name} train")
        check_paired(session.test_embedding, session.test_labels, trial_length, f"{name} test")
    dims = {np.asarray(s.train_embedding).reshape(len(s.train_embedding), -1).shape[1] for s in sessions.values()}
    if len(dims) > 1:
        raise ValueError(f"all sessions must share one embedding dimension, got {sorted(dims)}.")

    averages = {name: session_averages(s, trial_length) for name, s in sessions.items()}
    n = len(names)
    result = {m: np.full((n, n), np.nan) for m in SCORES}
    result["accuracy_per_bin"] = np.full((n, n, int(trial_length)), np.nan)
    alignments = {}
    for i, train_name in enumerate(names):
        train = sessions[train_name]
        decoder = (decoders or {}).get(train_name)
        if decoder is None:
            decoder = TrialDecoder(method=method, knn_grid=knn_grid, cv=cv).fit(
                train.train_embedding, train.train_labels
            )
        for j, test_name in enumerate(names):
            test = sessions[test_name]
            embedding = test.test_embedding
            if i != j and align:
                alignment = pair_alignment(averages[test_name], averages[train_name])
                alignments[(train_name, test_name)] = alignment
                embedding = alignment.transform(embedding)
            scores = score_trials(decoder, embedding, test.test_labels, trial_length)
            for m in SCORES:
                result[m][i, j] = scores[m]
            result["accuracy_per_bin"][i, j] = scores["accuracy_per_bin"]
    result.update(names=names, alignments=alignments, method=method, aligned=align)
    return result
