"""``ner.NER``: CEBRA trained with the rank loss, as a scikit-learn estimator."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Literal

import cebra
import cebra.integrations.sklearn.utils as sklearn_utils
import numpy as np
import torch
from sklearn.utils import check_array

import ner.model.solver  # noqa: F401  (registers the "ner-single-session" solver with CEBRA)
from ner.atomic import atomic_write
from ner.data.labels import PAPER_LAYOUT, LabelLayout
from ner.model.loader import RankLoader
from ner.model.loss import LabelDistance, RankLoss
from ner.model.sampling import seeded

_CHECKPOINT_KEYS = ("args", "state", "state_dict")


class NER(cebra.CEBRA):
    """Neural Embeddings Rank (Chen, Yang & Wang, NeurIPS 2024).

    CEBRA's encoder and training loop with the InfoNCE loss replaced by a rank
    loss over continuous labels. Defaults are the paper's: a 3-D embedding of
    neural activity ranked by (x-velocity, y-velocity, reach angle in degrees),
    positives drawn with CEBRA's ``time_delta`` rule on the two velocity columns,
    20000 iterations.

    Parameters
    ----------
    model_architecture, device, time_offsets, max_iterations, max_adapt_iterations, \
batch_size, learning_rate, output_dimension, verbose, num_hidden_units, \
pad_before_transform, optimizer_kwargs
        As in :class:`cebra.CEBRA`.
    temperature : float
        Divides embedding distances in the loss (the original ignored it).
    label_layout : LabelLayout
        How ``y`` is read: its width, its circular columns, the columns positives are
        searched on. The default is the paper's ``[vx, vy, angle]``; ``LabelLayout()``
        takes any number of linear columns (positions, a 1-D variable).
    positive_labels : {"reference", "own"}
        ``"reference"`` (the paper) ranks a positive by its reference's labels,
        ``"own"`` by its own.
    exact_search : bool
        KD-tree positive search; ``False`` uses CEBRA's dense search.
    seed : int or None
        Seeds the model initialisation and the sampling.

    Examples
    --------
    >>> import numpy as np
    >>> from ner import NER, LabelLayout
    >>> rng = np.random.default_rng(0)
    >>> X, position = rng.normal(size=(600, 20)), rng.normal(size=(600, 2))
    >>> model = NER(label_layout=LabelLayout(), max_iterations=5, batch_size=64,
    ...             verbose=False, seed=0).fit(X, position)
    >>> model.transform(X).shape
    (600, 3)
    """

    def __init__(
        self,
        model_architecture: str = "offset1-model",
        device: str = "cuda_if_available",
        temperature: float = 1.0,
        time_offsets: int = 1,
        max_iterations: int = 20000,
        max_adapt_iterations: int = 500,
        batch_size: int = 512,
        learning_rate: float = 1e-4,
        output_dimension: int = 3,
        verbose: bool = True,
        num_hidden_units: int = 32,
        pad_before_transform: bool = True,
        optimizer_kwargs: tuple = (("betas", (0.9, 0.999)), ("eps", 1e-08),
                                   ("weight_decay", 0), ("amsgrad", False)),
        label_layout: LabelLayout = PAPER_LAYOUT,
        positive_labels: Literal["reference", "own"] = "reference",
        exact_search: bool = True,
        seed: int | None = None,
    ):
        super().__init__(
            model_architecture=model_architecture, device=device,
            temperature=temperature, time_offsets=time_offsets,
            max_iterations=max_iterations,
            max_adapt_iterations=max_adapt_iterations, batch_size=batch_size,
            learning_rate=learning_rate, output_dimension=output_dimension,
            verbose=verbose, num_hidden_units=num_hidden_units,
            pad_before_transform=pad_before_transform,
            optimizer_kwargs=optimizer_kwargs)
        self.label_layout = label_layout
        self.positive_labels = positive_labels
        self.exact_search = exact_search
        self.seed = seed

    # --- the seams CEBRA's estimator builds a fit from -----------------------

    def partial_fit(self, X, *y, **kwargs):
        # CEBRA reads y's dtype before any seam sees it: DataFrames become arrays first.
        return super().partial_fit(_numpy(X), *(_numpy(label) for label in y), **kwargs)

    def transform(self, X, *args, **kwargs):
        return super().transform(_numpy(X), *args, **kwargs)

    def _prepare_data(self, X, y):
        X, label = self._check_inputs(X, y)
        return super()._prepare_data(X, (label,))

    def _prepare_loader(self, dataset, max_iterations, is_multisession):
        if is_multisession:
            raise NotImplementedError("NER trains on one session at a time.")
        return RankLoader(
            dataset=dataset, batch_size=self.batch_size,
            num_steps=max_iterations, time_offset=self.time_offsets,
            search_columns=self._layout().search_columns(dataset.continuous_index.shape[1]),
            positive_labels=self.positive_labels,
            exact_search=self.exact_search, seed=self.seed,
        ), "ner-single-session"

    def _prepare_criterion(self):
        return RankLoss(self.temperature, LabelDistance(self._layout().circular))

    def _prepare_model(self, dataset, is_multisession):
        return seeded(self.seed, lambda: super(NER, self)._prepare_model(dataset, is_multisession))

    # --- input validation ------------------------------------------------------

    def _layout(self) -> LabelLayout:
        if not isinstance(self.label_layout, LabelLayout):
            raise ValueError("label_layout must be a ner.LabelLayout, got "
                             f"{type(self.label_layout).__name__}")
        return self.label_layout

    def _check_inputs(self, X, y: tuple):
        """Reject what CEBRA would accept silently or fail on deep inside torch."""
        if len(y) != 1:
            raise ValueError(f"NER.fit takes one label array y, got {len(y)}.")
        # partial_fit already made tensors and DataFrames arrays.
        X = check_array(X, dtype=np.float32, input_name="X")
        label = np.asarray(y[0])
        if label.ndim == 1:
            label = label[:, None]  # one continuous variable
        label = check_array(label, dtype=None, input_name="y")
        if not np.issubdtype(label.dtype, np.floating):
            raise ValueError(
                f"y has dtype {label.dtype}; NER ranks continuous labels, and CEBRA "
                "would take integer labels as discrete. Pass y.astype(float).")
        if len(X) != len(label):
            raise ValueError(f"X has {len(X)} samples but y has {len(label)}.")
        self._layout().check(label.shape[1])
        if self.batch_size is None or len(X) < self.batch_size:
            raise ValueError(f"X has {len(X)} samples, fewer than batch_size="
                             f"{self.batch_size}; lower batch_size.")
        return X, label.astype(np.float32)

    # --- persistence -------------------------------------------------------------

    def _get_state(self):
        # Plain types only, so that torch.load(weights_only=True) reads the file
        # without allow-listing numpy or CEBRA classes; the offset is recomputed.
        state = super()._get_state()
        del state["offset_"]
        state["label_types_"] = [(np.dtype(dtype).str, tuple(shape))
                                 for dtype, shape in state["label_types_"]]
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
             **kwargs) -> "NER":
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
        estimator.label_types_ = [(np.dtype(dtype), torch.Size(shape))
                                  for dtype, shape in state["label_types_"]]
        estimator.offset_ = estimator._compute_offset()
        estimator.device_ = sklearn_utils.check_device(estimator.device)

        model = cebra.models.init(
            estimator.model_architecture, num_neurons=state["n_features_in_"],
            num_units=estimator.num_hidden_units,
            num_output=estimator.output_dimension)
        criterion = estimator._prepare_criterion()
        optimizer = torch.optim.Adam(
            itertools.chain(model.parameters(), criterion.parameters()),
            lr=estimator.learning_rate, **dict(estimator.optimizer_kwargs))
        solver = cebra.solver.init(state["solver_name_"], model=model,
                                   criterion=criterion, optimizer=optimizer,
                                   tqdm_on=estimator.verbose)
        solver.load_state_dict(checkpoint["state_dict"])
        solver.to(estimator.device_)
        estimator.model_, estimator.solver_ = model, solver
        return estimator


def _numpy(array):
    """Tensors and table-like inputs (DataFrames) as numpy arrays; anything else as it is."""
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return array.to_numpy(copy=True) if hasattr(array, "to_numpy") else array  # writable, as torch wants
