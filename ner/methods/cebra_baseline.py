"""The paper's CEBRA baseline: stock CEBRA, with its ``time_delta`` positives drawn by the exact, seeded sampler."""

from __future__ import annotations

import dataclasses
import inspect

import cebra
import cebra.data
import literate_dataclasses

from ner.model.sampling import ExactTimedeltaDistribution, seeded


@literate_dataclasses.dataclass
class SeededContinuousLoader(cebra.data.ContinuousDataLoader):
    """CEBRA's continuous loader whose ``time_delta`` positives come from the KD-tree search (the same
    picks as CEBRA's dense search, tests/test_sampling.py), drawn from seeded generators."""

    seed: int = literate_dataclasses.field(default=None, doc="Seed for the sampling (None: from entropy).")

    def _init_distribution(self):
        if self.conditional != "time_delta":
            return super()._init_distribution()
        self.distribution = ExactTimedeltaDistribution(self.dataset.continuous_index, self.time_offset,
                                                       device=self.device, seed=self.seed)


class SeededCEBRA(cebra.CEBRA):
    """``cebra.CEBRA`` (InfoNCE, its solver untouched) with a ``seed`` for the model and the sampler.

    Stock CEBRA 0.6 draws its ``time_delta`` positives from unseeded generators, so two runs differ;
    here single-session ``time_delta`` training uses :class:`SeededContinuousLoader`, searching
    positives on every label column as CEBRA does. Other configurations train as stock CEBRA.
    """

    def __init__(self, seed: int | None = None, **cebra_parameters):
        super().__init__(**cebra_parameters)
        self.seed = seed

    # scikit-learn reads an estimator's parameters off its constructor's signature: CEBRA's, and the seed.
    __init__.__signature__ = inspect.signature(cebra.CEBRA.__init__).replace(parameters=[
        *inspect.signature(cebra.CEBRA.__init__).parameters.values(),
        inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, default=None)])

    def _prepare_loader(self, dataset, max_iterations, is_multisession):
        loader, solver = super()._prepare_loader(dataset, max_iterations, is_multisession)
        if type(loader) is not cebra.data.ContinuousDataLoader or loader.conditional != "time_delta":
            return loader, solver
        fields = {field.name: getattr(loader, field.name) for field in dataclasses.fields(loader) if field.init}
        return SeededContinuousLoader(**fields, seed=self.seed), solver

    def _prepare_model(self, dataset, is_multisession):
        return seeded(self.seed, lambda: super(SeededCEBRA, self)._prepare_model(dataset, is_multisession))


def cebra_baseline(output_dimension: int = 3, max_iterations: int = 20000, **overrides) -> SeededCEBRA:
    """An unfitted CEBRA configured as the paper's CEBRA baseline.

    offset1-model, batch 512, learning rate 1e-4, temperature 1, time_offsets 1 and ``time_delta``
    positives. Fit it with ``fit(neural, labels)`` on all 3 label columns (vx*10, vy*10, angle):
    positives are then searched on all three, as the original did. ``output_dimension`` is 3 or 16
    in the paper; ``overrides`` replace any other ``cebra.CEBRA`` argument, or ``seed``.
    """
    settings = dict(
        model_architecture="offset1-model",
        batch_size=512,
        learning_rate=1e-4,
        temperature=1.0,
        time_offsets=1,
        conditional="time_delta",
        output_dimension=output_dimension,
        max_iterations=max_iterations,
        device="cuda_if_available",
        verbose=False,
    )
    settings.update(overrides)
    return SeededCEBRA(**settings)
