"""PCA of trial-averaged rates, and the per-direction trial averages that PCA and dPCA share."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

from ner.baselines import check_fit_input, check_neural
from ner.evaluation.decoding import N_DIRECTIONS, direction_classes


def direction_averages(X, y, trial_length: int) -> np.ndarray:
    """Mean rates per reach direction and within-trial bin: (8 directions x trial_length x units).

    ``X`` (bins x units) and ``y`` (bins x 3) are whole trials of ``trial_length`` bins; direction
    classes follow the angle column (0, 45, ..., 315 degrees -> 0..7).
    """
    X, y = check_fit_input(X, y, trial_length)
    trial_length = int(trial_length)
    trials = X.reshape(-1, trial_length, X.shape[1])
    per_trial = direction_classes(y[::trial_length, 2])
    return np.stack([trials[per_trial == d].mean(axis=0) for d in range(N_DIRECTIONS)])


class TrialAveragePCA(TransformerMixin, BaseEstimator):
    """PCA fitted on per-direction, per-bin averages of the training trials; projects any rates.

    Averaging first keeps the axes that carry movement-locked variance rather than trial-to-trial noise,
    as the paper's PCA baseline did.
    """

    def __init__(self, n_components: int = 3, trial_length: int = 40):
        self.n_components = n_components
        self.trial_length = trial_length

    def fit(self, X, y):
        """Fit on rates ``X`` (bins x units) and labels ``y`` (bins x 3) of whole training trials."""
        averages = direction_averages(X, y, self.trial_length)
        self.trial_averages_ = averages
        self.pca_ = PCA(n_components=self.n_components).fit(averages.reshape(-1, averages.shape[-1]))
        self.n_features_in_ = averages.shape[-1]
        return self

    def transform(self, X) -> np.ndarray:
        """Project rates (bins x units) onto the fitted components: (bins x n_components)."""
        check_is_fitted(self)
        return self.pca_.transform(check_neural(X, self.n_features_in_))
