"""PCA of per-direction trial-averaged rates (the paper's PCA baseline)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

from ner.data.labels import check_samples
from ner.evaluation.trials import trial_averages


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
        averages = trial_averages(X, y, self.trial_length)  # directions x time x units
        self.trial_averages_ = averages
        self.pca_ = PCA(n_components=self.n_components).fit(averages.reshape(-1, averages.shape[-1]))
        self.n_features_in_ = averages.shape[-1]
        return self

    def transform(self, X) -> np.ndarray:
        """Project rates (bins x units) onto the fitted components: (bins x n_components)."""
        check_is_fitted(self)
        return self.pca_.transform(check_samples(X, "neural activity", self.n_features_in_))
