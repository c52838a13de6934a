"""UMAP, unsupervised or with the reach angle as target, fitted on training data only."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ner.data.labels import check_paired, check_samples
from ner.extras import missing_extra


class UMAPBaseline(TransformerMixin, BaseEstimator):
    """UMAP with the paper's settings (2-D, n_neighbors 68, min_dist 0.2475).

    ``use_labels=True`` passes the reach angle as UMAP's (categorical) target during ``fit``. Test data
    is embedded with UMAP's ``transform``, which takes rates only; the original instead fitted a second
    UMAP on the test data. ``seed`` makes a run repeatable (UMAP then runs single-threaded).
    """

    def __init__(self, use_labels: bool = False, n_components: int = 2, n_neighbors: int = 68,
                 min_dist: float = 0.2475, seed: int | None = 0):
        self.use_labels = use_labels
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.seed = seed

    def fit(self, X, y=None):
        """Fit on training rates ``X`` (bins x units); ``y`` (bins x 3) is required with ``use_labels``."""
        if self.use_labels:
            X, y = check_paired(X, y, name="training")
            target = y[:, 2]
        else:
            X = check_samples(X)
            target = None
        if len(X) <= self.n_neighbors:
            raise ValueError(f"UMAP needs more than n_neighbors={self.n_neighbors} bins to fit, got {len(X)}")
        try:
            import umap
        except ImportError as exc:
            raise missing_extra("umap-learn", "baselines", exc) from exc
        self.umap_ = umap.UMAP(n_components=self.n_components, n_neighbors=self.n_neighbors,
                               min_dist=self.min_dist, random_state=self.seed,
                               n_jobs=1 if self.seed is not None else -1)  # a seed means one thread anyway
        self.umap_.fit(X, y=target)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X) -> np.ndarray:
        """Embed new rates (bins x units) into the fitted map: (bins x n_components)."""
        check_is_fitted(self)
        return self.umap_.transform(check_samples(X, "neural activity", self.n_features_in_))
