"""Fit one estimator on a training split, embed both splits, and write the cache with its provenance."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ner.workflow.store import versions, write_npz

__all__ = ["fit_and_cache", "checkpoint_path", "sampler_of", "is_cebra"]


def sampler_of(estimator) -> str | None:
    """Which positive sampler a CEBRA-family estimator draws with (None for other methods)."""
    import cebra

    from ner.methods.cebra_baseline import SeededCEBRA
    from ner.model.estimator import NER

    if isinstance(estimator, NER):
        return "kd-tree exact" if estimator.exact_search else "cebra dense"
    if isinstance(estimator, SeededCEBRA):
        return "kd-tree exact" if estimator.conditional == "time_delta" else f"cebra {estimator.conditional}"
    if isinstance(estimator, cebra.CEBRA):
        return "cebra dense"
    return None


def is_cebra(estimator) -> bool:
    """Whether ``estimator`` trains with CEBRA's solver (and so can take embedding snapshots)."""
    import cebra

    return isinstance(estimator, cebra.CEBRA)


def _loss_curve(estimator) -> np.ndarray | None:
    solver = getattr(estimator, "solver_", None)
    curve = solver.log["total"] if solver is not None else getattr(estimator, "loss_history_", None)
    return None if curve is None else np.asarray(curve, dtype=np.float32)


def seed_everything(seed):
    # cebra.CEBRA has no seed parameter; the global seed fixes its model initialisation (its time_delta
    # sampler seeds itself from entropy, so stock CEBRA runs still differ slightly). NER seeds its own.
    if seed is None:
        return
    import torch

    np.random.seed(seed)
    torch.manual_seed(seed)


class _Snapshots:
    """A ``cebra.CEBRA.fit`` callback that embeds the training and test rates at chosen iterations."""

    def __init__(self, iterations, train_neural, test_neural):
        import torch

        self.wanted = set(iterations)
        self.inputs = {"train": torch.from_numpy(np.ascontiguousarray(train_neural, dtype=np.float32)),
                       "test": torch.from_numpy(np.ascontiguousarray(test_neural, dtype=np.float32))}
        self.taken = {"iterations": [], "train": [], "test": []}

    def __call__(self, num_steps, solver):
        import torch

        if num_steps + 1 not in self.wanted:  # cebra counts steps from 0, after the first update
            return
        with torch.no_grad():
            for split, inputs in self.inputs.items():
                self.taken[split].append(solver.transform(inputs).cpu().numpy().astype(np.float32))
        solver.model.train()  # transform switched the model to eval mode; training goes on
        self.taken["iterations"].append(num_steps + 1)

    def arrays(self) -> dict:
        return {"snapshot_iterations": np.array(self.taken["iterations"], dtype=np.int64),
                "snapshot_train_embedding": np.stack(self.taken["train"]),
                "snapshot_test_embedding": np.stack(self.taken["test"])}


def checkpoint_path(estimator, target: Path, *, resume: bool = True) -> Path | None:
    """Where the fit of the cache ``target`` checkpoints, to resume after a kill: beside the cache for an
    NER fit (:mod:`ner.model.checkpoint`), None for other methods. Unless ``resume``, a checkpoint left
    there is deleted first: a forced recomputation must not reuse steps taken by older code."""
    from ner.model.checkpoint import remove
    from ner.model.estimator import NER

    if not isinstance(estimator, NER):
        return None
    path = target.with_name(f"{target.stem}.checkpoint.pt")
    if not resume:
        remove(path)
    return path


def fit_and_cache(estimator, train, test, target: Path, *, provenance: Mapping, arrays: Mapping, seed, device,
                  snapshots=None, resume: bool = True) -> None:
    """Fit ``estimator`` on the ``train`` split, embed both splits and write the cache at ``target``.

    ``train`` and ``test`` carry ``neural``, ``labels`` and ``n_trials``. The cache holds float32 embeddings and
    labels (and, for an estimator with ``posterior_mean``, the label-informed ``*_posterior_embedding``), the
    loss curve (trained methods), snapshot embeddings when ``snapshots`` are asked, the caller's
    ``arrays``, and ``provenance`` completed with the trial counts, sampler, versions, device and wall time.
    An NER fit goes on from the checkpoint a killed fit of this cache left, unless ``resume`` is False.
    """
    from ner.model.checkpoint import remove

    seed_everything(seed)
    start = time.perf_counter()
    # Snapshots would not survive a kill.
    checkpoint = None if snapshots else checkpoint_path(estimator, target, resume=resume)
    if snapshots:
        hook = _Snapshots(snapshots, train.neural, test.neural)
        estimator.fit(train.neural, train.labels, callback=hook, callback_frequency=1)
    elif checkpoint:
        estimator.fit(train.neural, train.labels, checkpoint=checkpoint)
    else:
        estimator.fit(train.neural, train.labels)
    embeddings = {"train_embedding": estimator.transform(train.neural),
                  "test_embedding": estimator.transform(test.neural)}
    if hasattr(estimator, "posterior_mean"):  # piVAE: also the paper's label-informed embedding
        embeddings.update(train_posterior_embedding=estimator.posterior_mean(train.neural, train.labels),
                          test_posterior_embedding=estimator.posterior_mean(test.neural, test.labels))
    wall = time.perf_counter() - start
    provenance = {
        **provenance,
        "n_train_trials": train.n_trials,
        "n_test_trials": test.n_trials,
        "sampler": sampler_of(estimator),
        "versions": versions(),
        "device": str(getattr(estimator, "device_", None) or device),
        "wall_time_s": round(wall, 3),  # of this process: a resumed fit's earlier steps are not counted
        **({"resumed_from_step": estimator.resumed_from_step_}
           if getattr(estimator, "resumed_from_step_", 0) else {}),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    cache = {key: np.asarray(value, dtype=np.float32) for key, value in embeddings.items()}
    cache.update(train_labels=train.labels.astype(np.float32), test_labels=test.labels.astype(np.float32),
                 **arrays, provenance=np.array(json.dumps(provenance, sort_keys=True)))
    loss = _loss_curve(estimator)
    if loss is not None:
        cache["loss"] = loss
    if snapshots:
        cache.update(hook.arrays())
    write_npz(target, cache)
    if checkpoint:
        remove(checkpoint)
