"""The paper's comparison methods behind one fit/transform face.

Every baseline is a scikit-learn estimator used the same way::

    model = make_baseline("pca", trial_length=session.trial_length)
    model.fit(train.neural, train.labels)   # rates (bins x units), labels (bins x 3: vx*10, vy*10, angle)
    embedding = model.transform(test.neural)  # rates only: no baseline sees labels when embedding

Settings, ``trial_length`` included where trial averages are taken, go to the constructor; ``fit`` takes
rates and the labels of the same bins (methods that do not use labels, such as unsupervised UMAP, accept
and ignore them); ``transform`` takes rates only. Learned state ends in ``_``. piVAE's label-informed
posterior (the original paper's test embedding, which sees test labels) is a separate, explicit method,
:meth:`PiVAE.posterior_mean`.

=============  ===========================================================================
name           method
=============  ===========================================================================
cebra3d        stock ``cebra.CEBRA``, 3-D, positives searched on all 3 label columns
cebra16d       the same with a 16-D output
pca            PCA (3 components) of per-direction trial-averaged training rates
umap           UMAP, 2-D, unsupervised
umap_label     UMAP, 2-D, with the reach angle as target
dpca           dPCA (3 stimulus components) of training trial averages
pivae          piVAE (PyTorch): conv encoder, label prior, Poisson observations, 3-D latent
=============  ===========================================================================

UMAP and dPCA are optional: ``pip install "ner[baselines]"``. They are imported only when used.
"""

from __future__ import annotations

import importlib

import numpy as np

from ner.evaluation.decoding import check_labels

__all__ = ["BASELINES", "make_baseline", "check_neural", "check_fit_input", "missing_extra"]

# name -> (module, factory, fixed keyword arguments); modules load on first use so that
# `import ner.baselines` pulls neither torch models nor the optional extras.
BASELINES = {
    "cebra3d": ("cebra_baseline", "cebra_baseline", {"output_dimension": 3}),
    "cebra16d": ("cebra_baseline", "cebra_baseline", {"output_dimension": 16}),
    "pca": ("pca", "TrialAveragePCA", {}),
    "umap": ("umap_baseline", "UMAPBaseline", {"use_labels": False}),
    "umap_label": ("umap_baseline", "UMAPBaseline", {"use_labels": True}),
    "dpca": ("dpca", "StimulusDPCA", {}),
    "pivae": ("pivae", "PiVAE", {}),
}


def make_baseline(name: str, **kwargs):
    """A new, unfitted baseline by its registry name; ``kwargs`` override its settings."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    module, factory, fixed = BASELINES[name]
    clash = sorted(set(fixed) & set(kwargs))
    if clash:
        raise ValueError(f"baseline {name!r} fixes {', '.join(clash)}; pick another name instead of overriding it")
    make = getattr(importlib.import_module(f"{__name__}.{module}"), factory)
    return make(**fixed, **kwargs)


def __getattr__(name):
    # Classes by name (ner.baselines.PiVAE, ...) without importing every module up front.
    for module, factory, _ in BASELINES.values():
        if factory == name:
            return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def missing_extra(package: str, exc: ImportError) -> ImportError:
    """The error to raise when an optional baseline dependency is absent."""
    return ImportError(f"this baseline needs {package}, which is not installed: pip install \"ner[baselines]\" ({exc})")


def check_neural(X, n_features=None) -> np.ndarray:
    """``X`` as a finite 2-D float array (bins x units), optionally with ``n_features`` units."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"neural activity must be a non-empty 2-D array (bins x units), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"neural activity must be numeric, got dtype {X.dtype}")
    X = X.astype(np.float64, copy=False)
    bad = ~np.isfinite(X)
    if bad.any():
        raise ValueError(
            f"neural activity holds {int(bad.sum())} NaN/inf values (first in bin {int(np.argwhere(bad)[0, 0])}); "
            "drop or impute them first"
        )
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"neural activity has {X.shape[1]} units but the baseline was fitted on {n_features}")
    return X


def check_fit_input(X, y, trial_length=None):
    """Validate rates and labels for ``fit``: same bins, 3 finite label columns, 8 directions, whole trials."""
    X = check_neural(X)
    if y is None:
        raise ValueError("labels are required: pass y with shape (bins, 3) = vx*10, vy*10, angle")
    y = check_labels(y, "labels")
    if len(X) != len(y):
        raise ValueError(f"neural activity has {len(X)} bins but labels have {len(y)}: they must be the same bins")
    if trial_length is not None:
        if isinstance(trial_length, bool) or int(trial_length) != trial_length or trial_length < 1:
            raise ValueError(f"trial_length must be a positive integer, got {trial_length!r}")
        if len(X) % int(trial_length):
            raise ValueError(
                f"{len(X)} bins are not whole trials of trial_length={trial_length}; pass the session's trial_length"
            )
    return X, y
