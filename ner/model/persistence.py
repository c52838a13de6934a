"""Saving and loading a fitted :class:`ner.NER`: CEBRA's checkpoint, in plain types only, so that
``torch.load(weights_only=True)`` reads it without allow-listing numpy or CEBRA classes."""

from __future__ import annotations

import dataclasses
from typing import Literal

import cebra
import cebra.integrations.sklearn.utils as sklearn_utils
import numpy as np
import torch
from torch import nn

from ner.atomic import atomic_write
from ner.data.labels import LabelLayout

_CHECKPOINT_KEYS = ("args", "state", "state_dict")


class Persistent:
    """What :class:`ner.NER` adds to CEBRA's ``save``/``load``: its own parameters and fitted state
    (label layout, anchors of a multi-session model, restart losses), in plain types."""

    def _get_state(self):
        # Plain types only, so that torch.load(weights_only=True) reads the file
        # without allow-listing numpy or CEBRA classes; the offset is recomputed.
        state = super()._get_state()
        del state["offset_"]
        state["label_types_"] = _map_label_types(
            state["label_types_"], self.num_sessions_ is not None,
            lambda dtype, shape: (np.dtype(dtype).str, tuple(shape)))
        if hasattr(self, "restart_losses_"):
            state["restart_losses_"] = self.restart_losses_
        if self.num_sessions_ is not None:
            state["anchor_embeddings_"] = self.anchor_embeddings_.cpu()
            state["anchor_labels_"] = self.anchor_labels_.cpu()
        return state

    def _get_state_dict(self):
        checkpoint = super()._get_state_dict()
        checkpoint["metadata"] = {key: str(value)  # TorchVersion is not plain
                                  for key, value in checkpoint["metadata"].items()}
        checkpoint["args"]["label_layout"] = dataclasses.asdict(self._layout())
        return checkpoint

    def save(self, filename, backend: Literal["sklearn"] = "sklearn"):
        """Write the fitted estimator to ``filename`` atomically."""
        if backend != "sklearn":
            raise ValueError("NER saves with the 'sklearn' backend only.")
        if not sklearn_utils.check_fitted(self):
            raise ValueError("NER is not fitted; fit it before saving.")
        with atomic_write(filename) as part:
            torch.save(self._get_state_dict(), part)

    @classmethod
    def load(cls, filename, weights_only: bool = True, device: str | None = None,
             **kwargs):
        """Load an estimator written by :meth:`save` (CEBRA's own ``load`` builds a
        ``cebra.CEBRA``). The device is resolved anew (``device``, else the saved
        setting), so a GPU-trained model loads on a CPU-only machine."""
        checkpoint = torch.load(filename, weights_only=weights_only,
                                map_location="cpu", **kwargs)
        if not isinstance(checkpoint, dict) or any(
                key not in checkpoint for key in _CHECKPOINT_KEYS):
            raise ValueError(f"{filename} is not a NER checkpoint: expected a dict "
                             f"with keys {_CHECKPOINT_KEYS}.")
        args, state = dict(checkpoint["args"]), checkpoint["state"]
        args["label_layout"] = LabelLayout(**args["label_layout"])
        if device is not None:
            args["device"] = device
        estimator = cls(**args)
        for key, value in state.items():
            setattr(estimator, key, value)
        multisession = estimator.num_sessions_ is not None
        estimator.label_types_ = _map_label_types(
            state["label_types_"], multisession,
            lambda dtype, shape: (np.dtype(dtype), torch.Size(shape)))
        estimator.offset_ = estimator._compute_offset()
        estimator.device_ = sklearn_utils.check_device(estimator.device)

        def encoder(num_neurons):
            return cebra.models.init(
                estimator.model_architecture, num_neurons=num_neurons,
                num_units=estimator.num_hidden_units,
                num_output=estimator.output_dimension)

        features = state["n_features_in_"]
        model = (nn.ModuleList([encoder(n) for n in features]) if multisession
                 else encoder(features))
        criterion = estimator._prepare_criterion()
        solver = cebra.solver.init(state["solver_name_"], model=model,
                                   criterion=criterion,
                                   optimizer=estimator._optimizer(model, criterion),
                                   tqdm_on=estimator.verbose)
        solver.load_state_dict(checkpoint["state_dict"])
        solver.to(estimator.device_)
        estimator.model_, estimator.solver_ = model, solver
        return estimator


def _map_label_types(label_types, multisession: bool, convert):
    """CEBRA's ``label_types_`` (per label set, and per session if multi-session) converted."""
    if multisession:
        return [[convert(*types) for types in sessions] for sessions in label_types]
    return [convert(*types) for types in label_types]
