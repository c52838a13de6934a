"""A synthetic centre-out reaching session, so everything runs with no data and no network."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io
from scipy.ndimage import gaussian_filter1d

from ner.atomic import atomic_write

from .sessions import Session

BIN_S = 0.03  # 30 ms bins, as in the real files
SMOOTH_SD_BINS = 1.5  # the real files' Gaussian kernel: sd 1.5 bins, 9 taps
LEAD_BINS = 2  # M1 activity leads hand velocity by roughly 60 ms


def _minimum_jerk_speed(t: np.ndarray, onset: np.ndarray, duration: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Speed (cm/s) of a minimum-jerk reach: zero outside [onset, onset + duration], bell-shaped inside."""
    tau = np.clip((t - onset) / duration, 0.0, 1.0)
    return distance / duration * 30.0 * tau**2 * (1.0 - tau) ** 2


def synthetic_session(n_trials: int = 160, n_neurons: int = 60, trial_length: int = 40, seed: int = 0) -> Session:
    """Cosine-tuned Poisson neurons recorded during 8-direction centre-out reaches.

    Each trial reaches toward one of 8 targets (0..315 degrees, balanced, shuffled) with a minimum-jerk
    speed profile (onset, duration and distance jittered per trial, plus a little direction scatter).
    Rates are baseline + gain * speed * cos(direction - preferred direction), leading the movement by
    ``LEAD_BINS``; counts are Poisson in 30 ms bins, then Gaussian-smoothed (sd 1.5 bins) within trials.
    Deterministic for a given seed.

    >>> session = synthetic_session(n_trials=10, n_neurons=5, trial_length=20)
    >>> session.neural.shape, session.labels.shape          # bins x units, bins x [vx*10, vy*10, angle]
    ((200, 5), (200, 3))
    >>> session.train.n_trials, session.test.n_trials        # the chronological 80/20 split
    (8, 2)
    >>> sorted(set(session.angle.tolist()))[:3]
    [0.0, 45.0, 90.0]
    """
    if n_trials < 1 or n_neurons < 1 or trial_length < 10:
        raise ValueError(
            "need n_trials >= 1, n_neurons >= 1 and trial_length >= 10 bins, "
            f"got {n_trials}, {n_neurons}, {trial_length}"
        )
    rng = np.random.default_rng(seed)
    targets = rng.permutation(np.resize(np.arange(8) * 45.0, n_trials))

    span = trial_length * BIN_S
    onset = rng.uniform(0.10, 0.25, (n_trials, 1)) * span  # reaction time after the go cue
    duration = rng.uniform(0.40, 0.55, (n_trials, 1)) * span
    distance = rng.uniform(7.0, 9.0, (n_trials, 1))  # cm; peaks near 30 cm/s, like the recordings
    heading = np.deg2rad(targets[:, None] + rng.normal(0.0, 5.0, (n_trials, 1)))
    t = np.arange(trial_length) * BIN_S

    def velocity_at(times):
        speed = _minimum_jerk_speed(times, onset, duration, distance)
        return np.stack([speed * np.cos(heading), speed * np.sin(heading)], axis=-1)  # trials x bins x 2

    velocity = velocity_at(t)
    drive = velocity_at(t + LEAD_BINS * BIN_S)

    preferred = rng.uniform(0.0, 2.0 * np.pi, n_neurons)
    baseline_hz = rng.uniform(5.0, 20.0, n_neurons)
    gain_hz = rng.uniform(0.5, 1.5, n_neurons)  # Hz per cm/s along the preferred direction
    tuning = np.stack([np.cos(preferred), np.sin(preferred)]) * gain_hz  # 2 x neurons
    rate_hz = np.maximum(baseline_hz + drive @ tuning, 0.0)
    counts = rng.poisson(rate_hz * BIN_S).astype(np.float64)
    smoothed = gaussian_filter1d(counts, SMOOTH_SD_BINS, axis=1, mode="nearest", truncate=4.0 / SMOOTH_SD_BINS)

    angle = np.broadcast_to(targets[:, None, None], (n_trials, trial_length, 1))
    labels = np.concatenate([velocity * 10.0, angle], axis=-1)
    return Session(
        name=f"synthetic_seed{seed}",
        area="M1",
        neural=smoothed.reshape(-1, n_neurons),
        labels=labels.reshape(-1, 3),
        trial_length=trial_length,
    )


def write_session_mat(session: Session, path: str | os.PathLike) -> Path:
    """Write ``session`` in the real files' MATLAB format (with t_dur), atomically; return the path.

    Name it ``<name>_neural_con_dis_index.mat`` inside a data directory to load it back by name.
    """
    path = Path(path)
    contents = {
        f"neural_{session.area}": session.neural.astype(np.float64),
        "continuous_index": session.velocity.astype(np.float64) / 10.0,
        "discrete_index": session.angle.astype(np.float64)[:, None],
        "t_dur": np.array([[float(session.trial_length)]]),
    }
    with atomic_write(path) as partial, partial.open("wb") as stream:
        scipy.io.savemat(stream, contents, format="5", do_compression=True)
    return path
