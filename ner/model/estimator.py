"""``ner.NER``: CEBRA trained with the rank loss, as a scikit-learn estimator."""

from __future__ import annotations

import itertools
import numbers
from typing import Literal

import cebra
import cebra.integrations.sklearn.utils as sklearn_utils
import numpy as np
import torch
from sklearn.base import clone

import ner.model.solver  # noqa: F401  (registers the "ner-single-session" solver with CEBRA)
from ner.data.labels import PAPER_LAYOUT, LabelLayout
from ner.model.checkpoint import TrainingCheckpoint, restart_path
from ner.model.inputs import check_inputs, check_session_id, check_sessions
from ner.model.loader import RankLoader
from ner.model.loss import LabelDistance, RankLoss
from ner.model.multisession import (
    MAX_ANCHORS_PER_SESSION,
    AnchoredSolver,
    AnchorLoader,
    MultiSessionRankLoader,
)
from ner.model.persistence import Persistent
from ner.model.sampling import seeded

class NER(Persistent, cebra.CEBRA):
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
    multisession_positives : {"across", "within"}
        For a multi-session fit, where a reference's positive is searched (by the ``time_delta``
        rule on its labels): ``"across"`` in another session than the reference's (CEBRA's
        multi-session rule, except that CEBRA may also pick the reference's own), which pulls the
        sessions together by label; ``"within"`` in the reference's own session, as a
        single-session fit does, the sessions meeting only in the shared loss.
    seed : int or None
        Seeds the model initialisation and the sampling (and which training samples a
        multi-session model keeps for :meth:`add_session`).
    restarts : int
        Fits from this many seeds and keeps the fit whose training loss ends lowest (the mean of
        its last 5 % of steps), as k-means keeps its best of ``n_init``; ``restart_losses_`` holds
        every fit's. The first fit uses ``seed``, the others seeds drawn from it. A multi-session
        fit can settle with sessions as mirror images of each other, at a higher loss.

    Notes
    -----
    ``fit([X_1, ..., X_k], [y_1, ..., y_k])``, k >= 2, trains one encoder per session (the
    sessions may differ in units, not in label columns) into one latent space, as
    :class:`cebra.CEBRA` does; ``transform(X, session_id=i)`` embeds with session i's. Each step draws ``batch_size``
    references from every session and ranks each against the positives of all sessions, one rank
    loss over the k batches flattened. :meth:`add_session` fits an encoder for a further session
    into that space, leaving the trained ones as they are.

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

    Two sessions with 20 and 30 units, then a third added to their latent space:

    >>> sessions = [rng.normal(size=(300, 20)), rng.normal(size=(300, 30))]
    >>> labels = [rng.normal(size=(300, 2)) for _ in sessions]
    >>> model = NER(label_layout=LabelLayout(), max_iterations=5, batch_size=64,
    ...             verbose=False, seed=0).fit(sessions, labels)
    >>> model.transform(sessions[1], session_id=1).shape
    (300, 3)
    >>> model.add_session(rng.normal(size=(300, 25)), rng.normal(size=(300, 2)),
    ...                   max_iterations=5)
    2
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
        multisession_positives: Literal["across", "within"] = "across",
        seed: int | None = None,
        restarts: int = 1,
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
        self.multisession_positives = multisession_positives
        self.seed = seed
        self.restarts = restarts

    def fit(self, X, *y, adapt: bool = False, checkpoint=None, checkpoint_every: int = 500, **kwargs):
        """Fit as :meth:`cebra.CEBRA.fit` does, ``restarts`` times from other seeds, keeping the fit whose
        training loss ends lowest (``adapt`` retrains the fitted model's first layer once).

        ``checkpoint``, a file path, makes the fit resumable: every ``checkpoint_every`` steps the
        training state is written there, and a fit given a path that holds one goes on from it, to the
        same model the uninterrupted fit gives (:mod:`ner.model.checkpoint`). The file stays when the
        fit is done, so that fitting again returns at once; restart r > 0 writes ``<path>.restart<r>``.
        """
        if isinstance(self.restarts, bool) or not isinstance(self.restarts, numbers.Integral) or self.restarts < 1:
            raise ValueError(f"restarts must be a positive integer, got {self.restarts!r}")
        if adapt:
            if checkpoint is not None:
                raise ValueError("checkpoint is for a fit from scratch, not adapt=True")
            return super().fit(X, *y, adapt=True, **kwargs)
        if self.restarts == 1:
            self._checkpoint = None if checkpoint is None else TrainingCheckpoint(
                checkpoint, checkpoint_every, self.get_params())
            try:
                super().fit(X, *y, **kwargs)
            finally:
                del self._checkpoint
            self.restart_losses_ = [_final_loss(self)]
            return self
        best, losses = None, []
        for restart, seed in enumerate(_restart_seeds(self.seed, self.restarts)):
            candidate = clone(self).set_params(restarts=1, seed=seed).fit(
                X, *y, checkpoint=restart_path(checkpoint, restart), checkpoint_every=checkpoint_every, **kwargs)
            losses.append(_final_loss(candidate))
            if losses[-1] <= min(losses[:-1], default=np.inf):
                best = candidate
        vars(self).update({name: value for name, value in vars(best).items() if name.endswith("_")})
        self.restart_losses_ = losses
        return self

    # --- the seams CEBRA's estimator builds a fit from -----------------------

    def partial_fit(self, X, *y, **kwargs):
        # CEBRA reads y's dtype before any seam sees it: DataFrames become arrays first.
        if _is_sessions(X):
            X = [np.asarray(_numpy(session)) for session in X]
            y = tuple([np.asarray(_numpy(session)) for session in label]
                      if isinstance(label, (list, tuple)) else label for label in y)
        else:
            X, y = _numpy(X), tuple(_numpy(label) for label in y)
        super().partial_fit(X, *y, **kwargs)
        if self.num_sessions_ is not None:
            self._keep_anchors(self.state_[2].dataset)
        return self

    def _partial_fit(self, solver, model, loader, is_multisession, callback=None, callback_frequency=None):
        checkpoint = getattr(self, "_checkpoint", None)
        if checkpoint is None:
            return super()._partial_fit(solver, model, loader, is_multisession, callback, callback_frequency)
        done = checkpoint.restore(solver, loader)
        loader.num_steps = self.max_iterations - done
        super()._partial_fit(solver, model, loader, is_multisession, callback_frequency=1,
                             callback=checkpoint.hook(solver, loader, done, callback, callback_frequency))
        if done < self.max_iterations:
            checkpoint.save(solver, loader, self.max_iterations)  # the finished fit: fitting again returns at once
        self.resumed_from_step_ = done
        return self

    def transform(self, X, batch_size: int | None = None, session_id: int | None = None):
        """Embed ``X``; for a multi-session model, ``session_id`` names the session's encoder."""
        session_id = check_session_id(session_id, getattr(self, "num_sessions_", None))
        return super().transform(_numpy(X), batch_size=batch_size, session_id=session_id)

    def _prepare_data(self, X, y):
        if _is_sessions(X):
            X, labels = check_sessions(X, y, self._layout(), self.batch_size)
            return super()._prepare_data(X, (labels,))
        X, label = check_inputs(X, y, self._layout(), self.batch_size)
        return super()._prepare_data(X, (label,))

    def _prepare_loader(self, dataset, max_iterations, is_multisession):
        if is_multisession:
            return MultiSessionRankLoader(
                dataset=dataset, batch_size=self.batch_size,
                num_steps=max_iterations, time_offset=self.time_offsets,
                search_columns=self._layout().search_columns(dataset.continuous_index.shape[1]),
                positives=self.multisession_positives, positive_labels=self.positive_labels,
                exact_search=self.exact_search, seed=self.seed,
            ), "ner-multi-session"
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

    # --- a new session in a trained latent space --------------------------------

    def _keep_anchors(self, dataset):
        """Keep, from each training session, at most MAX_ANCHORS_PER_SESSION samples (drawn with
        ``seed``): their frozen embeddings and labels, which :meth:`add_session` aligns to."""
        rng = np.random.default_rng(self.seed)
        embeddings, labels = [], []
        for number, session in enumerate(dataset.iter_sessions()):
            keep = torch.from_numpy(np.sort(rng.choice(
                len(session), min(len(session), MAX_ANCHORS_PER_SESSION), replace=False)))
            # The whole session: a convolutional encoder sees each sample's context.
            embedding = self.solver_.transform(session.neural, self.pad_before_transform,
                                               session_id=number)
            embeddings.append(embedding[keep.to(embedding.device)].cpu())
            labels.append(session.continuous_index[keep.to(session.continuous_index.device)].cpu())
        self.anchor_embeddings_, self.anchor_labels_ = torch.cat(embeddings), torch.cat(labels)

    def add_session(self, X, y, max_iterations: int | None = None,
                    seed: int | None = None, batch_size: int | None = None,
                    learning_rate: float | None = None) -> int:
        """Fit an encoder for a new session into the trained latent space; return its session_id.

        Only the new encoder is trained: the others, and so every embedding of the training
        sessions, stay as they are. At fit time the model keeps, from each training session, at
        most ``MAX_ANCHORS_PER_SESSION`` (4096) samples drawn with ``seed``: their frozen
        embeddings and labels, saved with the model. Adaptation draws references from the new session through its new encoder and, as
        their positives, the anchors whose labels lie nearest to CEBRA's ``time_delta`` query (the
        reference's labels plus a difference over ``time_offsets`` samples of the new session), and
        minimises the rank loss over them, positives ranked by their own labels: the new session's
        embeddings come to rank by label among the training sessions' fixed ones.

        Parameters
        ----------
        X : array of shape (samples, units)
            The new session's neural activity; any number of units.
        y : array of shape (samples, label columns)
            Its labels, the columns the model was fitted on.
        max_iterations : int or None
            Training steps; None takes ``max_adapt_iterations``.
        seed : int or None
            Seeds the new encoder and the sampling; None takes the model's ``seed``.
        batch_size : int or None
            References per step; None takes ``batch_size``. A few calibration trials may hold
            fewer samples than the fit's batch.
        learning_rate : float or None
            Adam's step size for the new encoder; None takes ``learning_rate``.

        Returns
        -------
        int
            The new session's ``session_id`` for :meth:`transform`.
        """
        if not sklearn_utils.check_fitted(self) or self.num_sessions_ is None:
            raise ValueError("add_session needs a fitted multi-session model: fit NER on a list "
                             "of sessions first.")
        given = np.asarray(_numpy(y))  # CEBRA records the labels' type as given
        X, label = check_inputs(_numpy(X), (given,), self._layout(),
                                self.batch_size if batch_size is None else batch_size)
        if label.shape[1] != self.anchor_labels_.shape[1]:
            raise ValueError(f"y has {label.shape[1]} label column(s), the model was fitted on "
                             f"{self.anchor_labels_.shape[1]}.")
        seed = self.seed if seed is None else seed
        dataset, _ = super()._prepare_data(X, (label,))
        encoder = seeded(seed, lambda: super(NER, self)._prepare_model(dataset, False))
        self._configure_for_all(dataset, encoder, False)
        loader = AnchorLoader(
            dataset=dataset, batch_size=self.batch_size if batch_size is None else batch_size,
            num_steps=self.max_adapt_iterations if max_iterations is None else max_iterations,
            time_offset=self.time_offsets, search_columns=self._layout().search_columns(label.shape[1]),
            exact_search=self.exact_search, seed=seed,
            anchor_embeddings=self.anchor_embeddings_, anchor_labels=self.anchor_labels_)
        solver = AnchoredSolver(model=encoder, criterion=self._prepare_criterion().to(self.device_),
                                optimizer=self._optimizer(encoder, None, learning_rate),
                                tqdm_on=self.verbose)
        solver.fit(loader)

        self.solver_.model.append(encoder)
        self.model_ = self.solver_.model
        # Adam's moments belong to the parameters of the fit; a fresh one spans every encoder.
        self.solver_.optimizer = self._optimizer(self.model_, self.solver_.criterion)
        self.num_sessions_ = self.solver_.num_sessions = self.num_sessions_ + 1
        self.n_features_ = self.solver_.n_features = [*self.n_features_, X.shape[1]]
        self.n_features_in_ = [*self.n_features_in_, X.shape[1]]
        self.label_types_ = [[*self.label_types_[0], (given.dtype, given.shape)]]
        return self.num_sessions_ - 1

    def _optimizer(self, model, criterion, learning_rate=None) -> torch.optim.Adam:
        parameters = model.parameters() if criterion is None else itertools.chain(
            model.parameters(), criterion.parameters())
        return torch.optim.Adam(parameters, lr=learning_rate or self.learning_rate,
                                **dict(self.optimizer_kwargs))


def _restart_seeds(seed: int | None, restarts: int) -> list[int | None]:
    """``seed`` and, for every further restart, a seed drawn from it (None: every restart unseeded)."""
    if seed is None:
        return [None] * restarts
    return [seed, *(int(np.random.SeedSequence([seed, restart]).generate_state(1)[0])
                    for restart in range(1, restarts))]


def _final_loss(estimator) -> float:
    """The mean training loss over the last 5 % of steps: less noisy than the last step's."""
    total = estimator.solver_.log["total"]
    return float(np.mean(total[-max(1, len(total) // 20):]))


def _is_sessions(X) -> bool:
    """Whether ``X`` is a multi-session input: a list of (samples x units) arrays."""
    return isinstance(X, (list, tuple)) and (not X or any(np.ndim(x) >= 2 for x in X))


def _numpy(array):
    """Tensors and table-like inputs (DataFrames) as numpy arrays; anything else as it is."""
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return array.to_numpy(copy=True) if hasattr(array, "to_numpy") else array  # writable, as torch wants
