"""Decode hand velocity, position and reach direction from an embedding.

Labels follow the cached ``continuous_index`` layout: one row per time bin with columns
``[vx * 10, vy * 10, angle in degrees (0, 45, ..., 315)]``, whole trials of ``trial_length``
bins placed back to back. Position is the per-trial cumulative sum of velocity, starting from
zero at every trial start, for both the truth and the prediction.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.utils.validation import check_is_fitted

from ner.data.labels import check_paired, check_samples, check_trials, direction_classes

DEFAULT_KNN_GRID = (1, 3, 5, 9, 15, 25, 45, 75, 125)
SCORES = ("velocity_r2", "position_r2", "peak_accuracy")  # the per-split numbers a decoding reports

__all__ = [
    "DEFAULT_KNN_GRID",
    "SCORES",
    "TrialDecoder",
    "trial_positions",
    "accuracy_per_bin",
    "score_trials",
    "decode_session",
]


def trial_positions(velocity, trial_length) -> np.ndarray:
    """Per-trial cumulative sum of ``velocity`` (bins x 2), restarting from 0 at each trial."""
    velocity = np.asarray(velocity, dtype=float)
    check_trials(len(velocity), trial_length)
    per_trial = velocity.reshape(-1, int(trial_length), velocity.shape[1])
    return np.cumsum(per_trial, axis=1).reshape(velocity.shape)


def accuracy_per_bin(true_classes, predicted_classes, trial_length) -> np.ndarray:
    """Fraction of trials whose direction is decoded correctly at each within-trial bin."""
    true_classes = np.asarray(true_classes)
    predicted_classes = np.asarray(predicted_classes)
    check_trials(len(true_classes), trial_length)
    correct = (true_classes == predicted_classes).reshape(-1, int(trial_length))
    return correct.mean(axis=0)


class TrialDecoder(BaseEstimator):
    """Velocity regressor and direction classifier fitted on one embedding.

    Parameters
    ----------
    method : {"linear", "knn"}
        "linear": ordinary least squares for (vx, vy) and multinomial logistic regression for
        the direction. "knn": k-nearest-neighbour regressor and classifier, each with ``k``
        chosen by ``cv``-fold cross-validation on the training data only.
    knn_grid : sequence of int
        Candidate numbers of neighbours for ``method="knn"``.
    cv : int
        Number of cross-validation folds used to pick ``k``.
    max_iter, tol : int, float
        Iteration cap and tolerance of the (newton-cg) logistic regression. It is solved to the
        optimum: sklearn's default lbfgs at tol=1e-4 stops early enough that a peak accuracy can
        differ by a trial from the stored published numbers, and from one platform to another.
    """

    def __init__(self, method="linear", knn_grid=DEFAULT_KNN_GRID, cv=5, max_iter=1000, tol=1e-8):
        self.method = method
        self.knn_grid = knn_grid
        self.cv = cv
        self.max_iter = max_iter
        self.tol = tol

    def _estimators(self, n_samples):
        if self.method == "linear":
            return LinearRegression(), LogisticRegression(solver="newton-cg", max_iter=self.max_iter, tol=self.tol)
        if self.method != "knn":
            raise ValueError(f"method must be 'linear' or 'knn', got {self.method!r}.")
        grid = sorted(int(k) for k in self.knn_grid)
        if not grid or grid[0] < 1:
            raise ValueError(f"knn_grid must hold positive integers, got {self.knn_grid!r}.")
        # The smallest CV training fold bounds k: a larger k cannot be evaluated honestly.
        smallest_fold = n_samples - int(np.ceil(n_samples / self.cv))
        if grid[-1] > smallest_fold:
            raise ValueError(
                f"knn_grid goes up to k={grid[-1]} but a {self.cv}-fold CV training split holds only "
                f"{smallest_fold} of the {n_samples} training bins; shrink the grid."
            )
        # Unshuffled folds keep neighbouring bins of one trial together, so CV does not reward
        # k that only memorises adjacent, near-duplicate bins.
        folds = KFold(n_splits=self.cv)
        params = {"n_neighbors": grid}
        return (
            GridSearchCV(KNeighborsRegressor(), params, cv=folds, scoring="r2"),
            GridSearchCV(KNeighborsClassifier(), params, cv=folds, scoring="accuracy"),
        )

    def fit(self, embedding, labels):
        """Fit both decoders on ``embedding`` (bins x dims) and ``labels`` (bins x 3)."""
        embedding, labels = check_paired(embedding, labels, name="training")
        velocity, direction = self._estimators(len(embedding))
        self.velocity_model_ = clone(velocity).fit(embedding, labels[:, :2])
        self.direction_model_ = clone(direction).fit(embedding, direction_classes(labels[:, 2]))
        self.n_features_in_ = embedding.shape[1]
        return self

    def predict_velocity(self, embedding) -> np.ndarray:
        check_is_fitted(self)
        return self.velocity_model_.predict(self._check_dims(embedding))

    def predict_direction(self, embedding) -> np.ndarray:
        check_is_fitted(self)
        return self.direction_model_.predict(self._check_dims(embedding))

    def _check_dims(self, embedding):
        return check_samples(embedding, "embedding", self.n_features_in_)

    @property
    def n_neighbors_(self):
        """Chosen k for velocity and direction (kNN only)."""
        check_is_fitted(self)
        if self.method != "knn":
            raise AttributeError("n_neighbors_ exists for method='knn' only.")
        return {
            "velocity": self.velocity_model_.best_params_["n_neighbors"],
            "direction": self.direction_model_.best_params_["n_neighbors"],
        }


def score_trials(decoder, embedding, labels, trial_length, swap_velocity_r2=False) -> dict:
    """Score a fitted :class:`TrialDecoder` on whole trials.

    ``swap_velocity_r2=True`` computes velocity R^2 as ``r2_score(prediction, truth)``, the
    argument order of the original analysis for test and cross-session scores (legacy only).
    """
    embedding, labels = check_paired(embedding, labels, trial_length, "scored")
    truth = labels[:, :2]
    predicted = decoder.predict_velocity(embedding)
    velocity_r2 = r2_score(predicted, truth) if swap_velocity_r2 else r2_score(truth, predicted)
    predicted_direction = decoder.predict_direction(embedding)
    accuracy = accuracy_per_bin(direction_classes(labels[:, 2]), predicted_direction, trial_length)
    return {
        "velocity_r2": float(velocity_r2),
        "position_r2": float(
            r2_score(trial_positions(truth, trial_length), trial_positions(predicted, trial_length))
        ),
        "peak_accuracy": float(accuracy.max()),
        "accuracy_per_bin": accuracy,
        "predicted_velocity": predicted,
        "predicted_direction": predicted_direction,
    }


def decode_session(
    train_embedding,
    train_labels,
    test_embedding,
    test_labels,
    trial_length,
    legacy=False,
    method="linear",
    knn_grid=DEFAULT_KNN_GRID,
    cv=5,
) -> dict:
    """Fit decoders on the training split and score them on both splits.

    Returns a dict with ``{train,test}_{velocity_r2,position_r2,peak_accuracy}``,
    ``{train,test}_accuracy_per_bin`` (fraction correct per within-trial bin),
    ``{train,test}_predicted_velocity`` and ``{train,test}_predicted_direction``, and the
    fitted ``decoder``. Accuracies are fractions in [0, 1]. ``legacy=True`` swaps the
    arguments of the test velocity R^2 as the original analysis did (train R^2 was right there).
    """
    train_embedding, train_labels = check_paired(train_embedding, train_labels, trial_length, "train")
    test_embedding, test_labels = check_paired(test_embedding, test_labels, trial_length, "test")
    if train_embedding.shape[1] != test_embedding.shape[1]:
        raise ValueError(
            f"train embedding has {train_embedding.shape[1]} dims, test has {test_embedding.shape[1]}."
        )
    decoder = TrialDecoder(method=method, knn_grid=knn_grid, cv=cv).fit(train_embedding, train_labels)
    result = {"decoder": decoder, "method": method, "legacy": bool(legacy)}
    splits = {
        "train": score_trials(decoder, train_embedding, train_labels, trial_length),
        "test": score_trials(decoder, test_embedding, test_labels, trial_length, swap_velocity_r2=legacy),
    }
    for split, scores in splits.items():
        for key, value in scores.items():
            result[f"{split}_{key}"] = value
    return result
