"""The original protocol's numbers from embeddings, built on :mod:`ner.evaluation`'s functions.

Per session (Fig 4): :func:`~ner.evaluation.decoding.decode_session` with ``legacy=True`` (swapped test
velocity R^2). Across sessions (Fig 5): :func:`~ner.evaluation.cross_session.cross_session_matrices`
with ``legacy=True`` (rotation picked among 8 per-direction candidates fitted on all trials), and every
candidate scored too: the pick's criterion is rounding noise, so where the candidates disagree the entry
is *ambiguous* and only their range is a result.
"""

from __future__ import annotations

import numpy as np

from ner.evaluation.cross_session import cross_session_matrices
from ner.evaluation.decoding import SCORES, TrialDecoder, decode_session, score_trials

__all__ = ["session_scores", "legacy_cross_session"]


def session_scores(sessions: dict, trial_length: int, legacy: bool) -> dict:
    """``{name: {"<split>_<score>": value}}``: each session decoded on its own splits."""
    rows = {}
    for name, s in sessions.items():
        scores = decode_session(s.train_embedding, s.train_labels, s.test_embedding, s.test_labels, trial_length,
                                legacy=legacy)
        rows[name] = {f"{split}_{m}": float(scores[f"{split}_{m}"]) for split in ("train", "test") for m in SCORES}
    return rows


def legacy_cross_session(sessions: dict, trial_length: int) -> dict:
    """The legacy matrices, and for each off-diagonal entry the scores of all 8 rotation candidates.

    Returns ``names``, ``matrices`` (score -> n x n, the pick's), ``candidates`` (``(train, test)`` ->
    8 x 3 array of the candidates' scores in ``SCORES`` order) and ``picks`` (``(train, test)`` -> the
    candidate the original rule takes on this machine).
    """
    decoders = {name: TrialDecoder().fit(s.train_embedding, s.train_labels) for name, s in sessions.items()}
    result = cross_session_matrices(sessions, trial_length, legacy=True, decoders=decoders)
    candidates = {}
    for (train, test), alignment in result["alignments"].items():
        tested = sessions[test]
        scored = [score_trials(decoders[train], tested.test_embedding @ rotation, tested.test_labels,
                               trial_length, swap_velocity_r2=True) for rotation in alignment.candidates]
        candidates[(train, test)] = np.array([[s[m] for m in SCORES] for s in scored])
    return {"names": result["names"], "matrices": {m: result[m] for m in SCORES}, "candidates": candidates,
            "picks": {pair: alignment.pick for pair, alignment in result["alignments"].items()}}
