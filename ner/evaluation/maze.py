"""MC_Maze runs (a method fitted on one condition selection) and their held-out decoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from ner.data.maze import Selection
from ner.evaluation.decoding import trial_positions

__all__ = ["MazeRun", "RunSet", "decode_run"]


@dataclass(frozen=True, eq=False)
class MazeRun:
    """One method fitted on one selection: embeddings and per-bin facts of its training and test trials.

    ``condition`` is -1 where the source does not say (the original's files store no condition ids;
    they are recovered from the target angles where the file names allow). ``version`` is the maze
    version (0 straight, 1 and 2 with barriers). Velocities are mm/s (= cm/s x 10).
    """

    name: str
    method: str
    source: str
    selection: Selection
    embedding: dict
    velocity: dict
    condition: dict
    version: dict
    target_angle: dict
    trial_length: int
    bin_ms: float
    loss: np.ndarray | None
    path: Path
    provenance: dict = field(default_factory=dict)

    def n_trials(self, split: str) -> int:
        return len(self.velocity[split]) // self.trial_length


@dataclass(frozen=True, eq=False)
class RunSet:
    """The runs of one method from one source (empty when there are none), and where they came from."""

    method: str
    source: str | None
    folder: Path | None
    runs: dict

    def __bool__(self):
        return bool(self.runs)


def decode_run(run: MazeRun) -> dict:
    """A linear decoder fitted on the training embedding, scored on the held-out test trials.

    Velocity: least squares from the embedding. Position: per-trial cumulative sum of velocity from 0,
    for truth and prediction alike, in mm. R^2 is sklearn's ``r2_score(truth, prediction)`` averaged
    over x and y (the variance of the test trials that the decoder explains). ``train_velocity_r2`` and
    ``train_position_r2`` are the in-sample scores on the training trials, the kind the original reported
    as "explained variance"; the predictions and paths returned are the test trials'.
    """
    model = LinearRegression().fit(run.embedding["train"], run.velocity["train"])
    scale = run.bin_ms / 1000.0  # mm/s summed over bins -> mm
    result = {}
    for split, prefix in (("train", "train_"), ("test", "")):
        truth = run.velocity[split]
        predicted = model.predict(run.embedding[split])
        true_position = trial_positions(truth, run.trial_length) * scale
        predicted_position = trial_positions(predicted, run.trial_length) * scale
        result[f"{prefix}velocity_r2"] = float(r2_score(truth, predicted))
        result[f"{prefix}position_r2"] = float(r2_score(true_position, predicted_position))
    result.update(predicted_velocity=predicted, true_position=true_position, predicted_position=predicted_position)
    return result
