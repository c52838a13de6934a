"""Cross-session decoding matrices.

Entry ``[i, j]`` scores the decoder trained on session ``i`` (its training split) on the test
split of session ``j``, after aligning ``j``'s embedding onto ``i``'s. The diagonal is the
same-session held-out test, with no alignment.

Corrected mode (default): the alignment is :func:`~ner.evaluation.alignment.fit_alignment` on
training-trial averages of both sessions, and R^2 is ``r2_score(truth, prediction)``.
Legacy mode reproduces the original: :func:`~ner.evaluation.alignment.legacy_alignment` on
averages over all trials (train and test) of both sessions, and swapped velocity R^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ner.data.labels import check_paired
from ner.evaluation.alignment import fit_alignment, legacy_alignment
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


def session_averages(session: SplitEmbedding, trial_length, legacy=False) -> np.ndarray:
    """Per-direction trial averages used for alignment: training trials, or all trials in legacy."""
    if legacy:
        embedding = np.concatenate([session.train_embedding, session.test_embedding])
        labels = np.concatenate([session.train_labels, session.test_labels])
        return trial_averages(embedding, labels, trial_length)
    return trial_averages(session.train_embedding, session.train_labels, trial_length)


def pair_alignment(source_averages, anchor_averages, legacy=False):
    """The map from a tested session onto the training session's space."""
    if legacy:
        return legacy_alignment(source_averages, anchor_averages)
    return fit_alignment(source_averages, anchor_averages)


def cross_session_matrices(
    sessions: dict,
    trial_length,
    legacy=False,
    method="linear",
    knn_grid=DEFAULT_KNN_GRID,
    cv=5,
    decoders=None,
) -> dict:
    """n x n decoding matrices over ``sessions`` (a dict name -> :class:`SplitEmbedding`).

    ``decoders`` may map session names to :class:`TrialDecoder` already fitted on their
    training split, to reuse them (``method``, ``knn_grid`` and ``cv`` then apply to the rest).

    Returns ``names``, ``velocity_r2``, ``position_r2``, ``peak_accuracy`` (n x n; accuracy as a
    fraction), ``accuracy_per_bin`` (n x n x trial_length) and ``alignments`` (dict
    ``(train_name, test_name) -> Alignment``; legacy ones carry their candidates and pick).
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

    averages = {name: session_averages(s, trial_length, legacy) for name, s in sessions.items()}
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
            if i != j:
                alignment = pair_alignment(averages[test_name], averages[train_name], legacy)
                alignments[(train_name, test_name)] = alignment
                embedding = alignment.transform(embedding)
            scores = score_trials(decoder, embedding, test.test_labels, trial_length, swap_velocity_r2=legacy)
            for m in SCORES:
                result[m][i, j] = scores[m]
            result["accuracy_per_bin"][i, j] = scores["accuracy_per_bin"]
    result.update(names=names, alignments=alignments, legacy=bool(legacy), method=method)
    return result
