"""dPCA (Kobak et al. 2016) with the machens-lab ``dPCA`` package: the reach-direction components."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ner.data.labels import check_samples
from ner.evaluation.trials import trial_averages
from ner.extras import missing_extra


class StimulusDPCA(TransformerMixin, BaseEstimator):
    """dPCA of the training trial averages (units x directions x time); keeps the stimulus components.

    The stimulus marginalisation joins the pure direction term with the direction-time interaction
    (``join={"s": ["s", "st"]}``), the usual choice when the stimulus effect unfolds in time.
    ``transform`` applies the decoder axes to any rates, centred on the training mean.

    ``seed`` fixes the randomized SVD inside ``dPCA``, which otherwise draws from numpy's global state.
    """

    def __init__(self, n_components: int = 3, trial_length: int = 40, regularizer=None, seed: int = 0):
        self.n_components = n_components
        self.trial_length = trial_length
        self.regularizer = regularizer
        self.seed = seed

    def fit(self, X, y):
        """Fit on rates ``X`` (bins x units) and labels ``y`` (bins x 3) of whole training trials."""
        averages = trial_averages(X, y, self.trial_length)  # directions x time x units
        try:
            from dPCA.dPCA import dPCA
        except ImportError as exc:
            raise missing_extra("dPCA (with numexpr and numba)", "baselines", exc) from exc
        tensor = np.ascontiguousarray(averages.transpose(2, 0, 1))  # units x directions x time, as dPCA wants
        model = dPCA(labels="st", join={"s": ["s", "st"]}, n_components=self.n_components,
                     regularizer=self.regularizer)
        state = np.random.get_state()
        np.random.seed(self.seed)
        try:
            model.fit(tensor)
        finally:
            np.random.set_state(state)  # leave the caller's global random stream as it was
        self.trial_averages_ = averages
        self.mean_ = tensor.reshape(tensor.shape[0], -1).mean(axis=1)  # dPCA centres each unit on this
        self.components_ = model.D["s"].T  # n_components x units: the stimulus decoder axes
        self.n_features_in_ = tensor.shape[0]
        return self

    def transform(self, X) -> np.ndarray:
        """Stimulus components of rates (bins x units): (bins x n_components)."""
        check_is_fitted(self)
        return (check_samples(X, "neural activity", self.n_features_in_) - self.mean_) @ self.components_.T
