"""Resumable fits: a training checkpoint written every few hundred steps, from which a killed fit goes on.

A checkpoint holds what the rest of a fit depends on: the solver's state (encoders, Adam's moments,
the loss log), the sampling generators' states and the number of steps taken. A fit resumed from it
takes the same steps the uninterrupted fit would have, so it ends with the same model. The file also
records the estimator's parameters and a digest of the training data, and is refused for any other.
"""

from __future__ import annotations

import collections
import hashlib
import numbers
from pathlib import Path

import torch

from ner.atomic import atomic_write

#: Parameters that do not change what a fit computes.
_NEUTRAL_PARAMETERS = ("verbose", "device")


def data_digest(dataset) -> str:
    """sha256 of a CEBRA dataset's neural data and labels (every session's, for a multi-session one)."""
    digest = hashlib.sha256()
    sessions = dataset.iter_sessions() if hasattr(dataset, "iter_sessions") else [dataset]
    for session in sessions:
        for tensor in (session.neural, session.continuous_index):
            array = tensor.detach().cpu().contiguous().numpy()
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def restart_path(path, restart: int) -> Path | None:
    """The checkpoint of restart ``restart`` of a fit checkpointed at ``path`` (restart 0: ``path``)."""
    if path is None:
        return None
    path = Path(path)
    return path if restart == 0 else path.with_name(f"{path.name}.restart{restart}")


def remove(path) -> None:
    """Delete the checkpoint at ``path`` and those of its restarts."""
    path = Path(path)
    for file in [path, *path.parent.glob(f"{path.name}.restart*")]:
        file.unlink(missing_ok=True)


class TrainingCheckpoint:
    """The checkpoint of one fit at ``path``, written every ``every`` steps.

    ``parameters`` are the estimator's (as from ``get_params``); ``loader.generators()`` lists the
    torch generators the loader samples with.
    """

    def __init__(self, path, every: int, parameters: dict):
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"checkpoint_every must be a positive integer, got {every!r}")
        self.path, self.every = Path(path), int(every)
        self.parameters = {name: repr(value) for name, value in sorted(parameters.items())
                           if name not in _NEUTRAL_PARAMETERS}

    def restore(self, solver, loader) -> int:
        """Load the checkpoint, if there is one, into ``solver`` and ``loader``; return the steps it took."""
        if not self.path.exists():
            return 0
        try:
            state = torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception as error:
            raise ValueError(f"{self.path} is not a readable NER training checkpoint ({error}); "
                             "delete it to start the fit afresh") from error
        for what, expected in (("parameters", self.parameters), ("data", data_digest(loader.dataset))):
            if state.get(what) != expected:
                raise ValueError(f"{self.path} is the checkpoint of a fit with other {what}; delete it "
                                 "to start this fit afresh, or pass another checkpoint path")
        solver.load_state_dict(state["solver"])
        solver.log = collections.defaultdict(list, solver.log)  # saved as a plain dict
        for generator, saved in zip(loader.generators(), state["generators"], strict=True):
            generator.set_state(saved)
        return int(state["steps"])

    def save(self, solver, loader, steps: int) -> None:
        """Write the state after ``steps`` steps, atomically."""
        state = solver.state_dict()
        state["log"] = {key: list(values) for key, values in state["log"].items()}
        with atomic_write(self.path) as part:
            torch.save({"parameters": self.parameters, "data": data_digest(loader.dataset),
                        "steps": steps, "solver": state,
                        "generators": [generator.get_state() for generator in loader.generators()]}, part)

    def hook(self, solver, loader, done: int, callback=None, callback_frequency=None):
        """A ``cebra`` fit callback, called every step of a fit resumed after ``done`` steps: saves the
        checkpoint every ``every`` steps of the whole fit and calls ``callback`` as CEBRA would have,
        with the step counted over the whole fit."""
        def on_step(num_steps, _solver):
            step = done + num_steps  # cebra counts from 0, after the first update
            if (step + 1) % self.every == 0:
                self.save(solver, loader, step + 1)
            if callback is not None and callback_frequency is not None and step % callback_frequency == 0:
                callback(step, solver)
        return on_step
