"""The original protocol's numbers from embeddings, built on :mod:`ner.evaluation`'s functions.

Per session (Fig 4): :func:`~ner.evaluation.decoding.decode_session` with ``legacy=True`` (swapped test
velocity R^2). Across sessions (Fig 5, Fig 6): for the decoder of session A and the test trials of session
B, the original

1. fits one Procrustes matrix per direction from A's to B's trial averages over *all* trials, in the
   embeddings' own precision (:func:`legacy_candidates`; float32 for piVAE and UMAP, whose rounding then
   decides step 2),
2. keeps, among the candidates of positive determinant, the one whose ``|abs(det) - 1|`` is smallest, and
   the same among those of negative determinant (that criterion is rounding noise: within a sign the
   choice is arbitrary),
3. of those two takes the one whose single rotation of A's embedding (all trials) is closest, in summed
   absolute difference, to A's embedding rotated direction by direction (each direction's trials by their
   own candidate): :func:`rotation_pick`,
4. fits the decoder on A's training trials so rotated and scores it on B's unrotated test trials.

Orthogonal maps leave least squares, L2-penalised logistic regression and Euclidean neighbours unchanged,
so step 4 is computed as A's decoder scoring ``B_test @ R.T``: one decoder per session, not per pair.
Every candidate is scored, so an entry whose reachable candidates (the ones step 2's noise can select
and step 3 then keeps) disagree is *ambiguous*: only their range is a result.

Linear decoders are :class:`~ner.evaluation.decoding.TrialDecoder`'s (the original's logistic regression
ran lbfgs for at most 500 iterations; solved to the optimum here, an accuracy can differ by a trial). The
kNN decoders (:class:`LegacyKnnDecoder`) are the original's: a 5-fold grid search over ``n_neighbors`` in
:data:`LEGACY_KNN_GRID` with scikit-learn's defaults otherwise (uniform weights, Euclidean distance,
unshuffled folds, stratified for the direction classifier; R^2 and accuracy scoring), for velocity (the
label's ``vx*10, vy*10``) and for the direction class.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import orthogonal_procrustes
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from ner.data.labels import N_DIRECTIONS, check_paired, direction_classes
from ner.evaluation.decoding import SCORES, TrialDecoder, decode_session, score_trials

__all__ = [
    "LEGACY_KNN_GRID",
    "LegacyKnnDecoder",
    "legacy_candidates",
    "legacy_cross_session",
    "rotation_pick",
    "session_scores",
]

LEGACY_KNN_GRID = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class LegacyKnnDecoder(BaseEstimator):
    """The original's kNN decoders: velocity regressor and direction classifier, each with
    ``n_neighbors`` picked by ``cv``-fold grid search on the training data."""

    def __init__(self, grid=LEGACY_KNN_GRID, cv=5, algorithm="kd_tree"):
        self.grid = grid
        self.cv = cv
        self.algorithm = algorithm

    def fit(self, embedding, labels):
        embedding, labels = check_paired(embedding, labels, name="training")
        params = {"n_neighbors": list(self.grid)}
        # A k-d tree finds the same neighbours as the brute-force search scikit-learn's "auto" takes for the
        # 16-D embeddings, about ten times faster there (ties of equal distance aside).
        regressor, classifier = (KNeighborsRegressor(algorithm=self.algorithm),
                                 KNeighborsClassifier(algorithm=self.algorithm))
        self.velocity_model_ = GridSearchCV(regressor, params, cv=self.cv).fit(embedding, labels[:, :2])
        self.direction_model_ = GridSearchCV(classifier, params, cv=self.cv).fit(
            embedding, direction_classes(labels[:, 2]))
        return self

    def predict_velocity(self, embedding) -> np.ndarray:
        return self.velocity_model_.predict(embedding)

    def predict_direction(self, embedding) -> np.ndarray:
        return self.direction_model_.predict(embedding)


def _decoder(kind):
    if kind == "linear":
        return TrialDecoder()
    if kind == "knn":
        return LegacyKnnDecoder()
    raise ValueError(f"decoder must be 'linear' or 'knn', got {kind!r}")


def session_scores(sessions: dict, trial_length: int, legacy: bool) -> dict:
    """``{name: {"<split>_<score>": value}}``: each session decoded on its own splits (linear decoders)."""
    rows = {}
    for name, s in sessions.items():
        scores = decode_session(s.train_embedding, s.train_labels, s.test_embedding, s.test_labels, trial_length,
                                legacy=legacy)
        rows[name] = {f"{split}_{m}": float(scores[f"{split}_{m}"]) for split in ("train", "test") for m in SCORES}
    return rows


def _all_trials(session):
    """All trials of a session in the file's precision (train then test, as the original read them)."""
    embedding = np.concatenate([np.asarray(session.train_embedding), np.asarray(session.test_embedding)])
    labels = np.concatenate([np.asarray(session.train_labels), np.asarray(session.test_labels)])
    return embedding, direction_classes(labels[:, 2])


def legacy_candidates(source: tuple, target: tuple, trial_length: int) -> np.ndarray:
    """The 8 per-direction Procrustes maps (8 x dims x dims) of ``source``'s direction averages onto
    ``target``'s; each argument is ``(embedding, direction classes)`` of all trials (:func:`_all_trials`).

    Computed in the embedding's own dtype, as the original did: :func:`ner.evaluation.trial_averages` and
    :func:`ner.evaluation.alignment.procrustes` work in float64, whose rounding differs from the original's
    in exactly the digits the pick depends on.
    """
    def averages(embedding, classes, d):
        return embedding[classes == d].reshape(-1, int(trial_length), embedding.shape[1]).mean(axis=0)

    return np.stack([orthogonal_procrustes(averages(*source, d), averages(*target, d))[0].astype(float)
                     for d in range(N_DIRECTIONS)])


def rotation_pick(candidates, embedding, classes) -> dict:
    """The original's choice among per-direction rotations ``candidates`` (8 x dims x dims, direction d's
    map of the training session's embedding onto the tested session's), on this machine and under any
    resolution of its rounding noise.

    ``embedding``/``classes``: the training session's bins (all trials) and their direction classes.
    Returns ``pick`` (the index the rule takes here), ``reachable`` (every index the rule can take however
    the ``|abs(det) - 1|`` noise within each sign falls), ``any_sign_pick`` (argmin of that criterion over all 8: the rule as ported before,
    without the sign comparison), ``determinants`` and ``misfit`` (summed absolute difference between the
    single rotation and the per-direction rotations, per candidate).
    """
    candidates = np.asarray(candidates, dtype=float)
    embedding, classes = np.asarray(embedding), np.asarray(classes)
    determinants = np.linalg.det(candidates)
    noise = np.abs(np.abs(determinants) - 1.0)
    per_direction = np.empty_like(embedding)  # in the embedding's dtype, as the original's
    for d, rotation in enumerate(candidates):
        per_direction[classes == d] = embedding[classes == d] @ rotation
    misfit = np.array([np.abs(embedding @ rotation - per_direction).sum() for rotation in candidates])
    groups = [np.flatnonzero(determinants >= 0), np.flatnonzero(determinants < 0)]
    best = [int(g[np.argmin(noise[g])]) for g in groups if len(g)]
    # Equal misfits (never seen) left the original without a rotation; the positive one is taken here.
    pick = best[0] if len(best) == 1 or misfit[best[0]] <= misfit[best[1]] else best[1]
    if all(len(g) for g in groups):
        positive, negative = groups
        reachable = sorted([int(p) for p in positive if misfit[p] < misfit[negative].max()]
                           + [int(n) for n in negative if misfit[n] < misfit[positive].max()])
    else:
        reachable = [int(i) for i in range(len(candidates))]
    return {"pick": int(pick), "reachable": reachable, "any_sign_pick": int(np.argmin(noise)),
            "determinants": determinants.tolist(), "misfit": misfit.tolist()}


def legacy_cross_session(sessions: dict, trial_length: int, decoder: str = "linear") -> dict:
    """The legacy cross-session scores over ``sessions`` (name -> :class:`SplitEmbedding`).

    Returns ``names``, ``diagonal`` (name -> the same-session test scores, in ``SCORES`` order) and
    ``pairs``: ``(train, test)`` -> ``{"candidates": 8 x 3 scores, **rotation_pick(...)}``. ``decoder`` is
    ``"linear"`` (the original's least squares and logistic regression) or ``"knn"``.
    """
    names = list(sessions)
    every = {name: _all_trials(s) for name, s in sessions.items()}
    decoders = {name: _decoder(decoder).fit(s.train_embedding, s.train_labels) for name, s in sessions.items()}

    def scores(train, embedding, tested):
        scored = score_trials(decoders[train], embedding, tested.test_labels, trial_length, swap_velocity_r2=True)
        return [scored[m] for m in SCORES]

    diagonal = {name: scores(name, s.test_embedding, s) for name, s in sessions.items()}
    pairs = {}
    for train in names:
        for test in names:
            if test == train:
                continue
            tested = sessions[test]
            candidates = legacy_candidates(every[train], every[test], trial_length)
            pairs[(train, test)] = {
                "candidates": np.array([scores(train, tested.test_embedding @ rotation.T, tested)
                                        for rotation in candidates]),
                **rotation_pick(candidates, *every[train]),
            }
    return {"names": names, "diagonal": diagonal, "pairs": pairs}
