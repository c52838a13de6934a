"""Orthogonal Procrustes alignment of one session's embedding onto an anchor session's.

Both sessions are summarised by per-direction trial averages
(:func:`ner.evaluation.trials.trial_averages`, shape ``(8, trial_length, dims)``). The default fit
stacks all 8 directions into one ``(8 * trial_length, dims)`` matrix per session and solves a single
Procrustes problem, which is deterministic and uses every direction. The original analysis fitted one
Procrustes matrix per direction and picked one by ``|abs(det) - 1|``, which is zero up to rounding for
every orthogonal matrix: its faithful port, with the range of what that noise can select, is
:func:`ner.reference.legacy.rotation_pick`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import orthogonal_procrustes

from ner.data.labels import N_DIRECTIONS, check_samples

__all__ = ["Alignment", "procrustes", "fit_alignment"]


def _check_averages(averages, name):
    averages = np.asarray(averages, dtype=float)
    if averages.ndim != 3 or averages.shape[0] != N_DIRECTIONS:
        raise ValueError(f"{name} must have shape ({N_DIRECTIONS}, bins, dims), got {averages.shape}")
    if not np.all(np.isfinite(averages)):
        raise ValueError(f"{name} holds NaN or inf")
    return averages


def procrustes(source, target, allow_reflection=True) -> np.ndarray:
    """Orthogonal ``R`` minimising ``||source @ R - target||_F``.

    With ``allow_reflection=False`` the best proper rotation (``det R = +1``) is returned.
    """
    source = check_samples(source, "source")
    target = check_samples(target, "target")
    if source.shape != target.shape:
        raise ValueError(f"source {source.shape} and target {target.shape} must have the same shape.")
    if allow_reflection:
        return orthogonal_procrustes(source, target)[0]
    u, _, vt = np.linalg.svd(source.T @ target)
    # Flip the weakest singular direction when needed: the closest rotation to the optimum.
    sign = np.ones(len(vt))
    sign[-1] = np.sign(np.linalg.det(u @ vt))
    return (u * sign) @ vt


@dataclass
class Alignment:
    """A rigid map ``x -> (x - source_mean) @ rotation + anchor_mean``."""

    rotation: np.ndarray
    source_mean: np.ndarray
    anchor_mean: np.ndarray

    def transform(self, embedding) -> np.ndarray:
        embedding = check_samples(embedding, "embedding")
        if embedding.shape[1] != len(self.rotation):
            raise ValueError(f"embedding has {embedding.shape[1]} dims, the rotation expects {len(self.rotation)}.")
        return (embedding - self.source_mean) @ self.rotation + self.anchor_mean


def fit_alignment(source_averages, anchor_averages, center=True, allow_reflection=True) -> Alignment:
    """One Procrustes fit on all 8 directions stacked (the corrected default).

    Pass averages computed from training trials only (see :func:`~ner.evaluation.trials.trial_averages`) so that no
    test trial or test label informs the map. ``center=True`` removes each session's mean first,
    so an offset between sessions does not bias the rotation.
    """
    # Direction-major rows, so that row k of both sessions is the same direction and bin.
    source = _check_averages(source_averages, "source_averages").reshape(-1, np.shape(source_averages)[-1])
    anchor = _check_averages(anchor_averages, "anchor_averages").reshape(-1, np.shape(anchor_averages)[-1])
    if source.shape != anchor.shape:
        raise ValueError(f"source averages {source.shape} and anchor averages {anchor.shape} differ in shape.")
    dims = source.shape[1]
    source_mean = source.mean(axis=0) if center else np.zeros(dims)
    anchor_mean = anchor.mean(axis=0) if center else np.zeros(dims)
    rotation = procrustes(source - source_mean, anchor - anchor_mean, allow_reflection=allow_reflection)
    return Alignment(rotation, source_mean, anchor_mean)
