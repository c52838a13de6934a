"""The one registry of methods that the pipeline trains and the figures name.

Every method is a scikit-learn estimator used the same way::

    model = make_method("pca", trial_length=session.trial_length)
    model.fit(train.neural, train.labels)     # rates (bins x units), labels (bins x 3: vx*10, vy*10, angle)
    embedding = model.transform(test.neural)  # rates only: no method sees labels when embedding

==================  ======================================================================================
name                method
==================  ======================================================================================
ner                 NER with the paper's settings
ner_own_positives   NER ranking each positive by its own labels (an ablation the paper lacks)
ner_search_all      NER searching positives on all 3 label columns (an ablation the paper lacks)
cebra3d             stock CEBRA (InfoNCE), 3-D, positives searched on all 3 label columns, exact seeded sampler
cebra16d            the same with a 16-D output
pca                 PCA (3 components) of per-direction trial-averaged training rates
dpca                dPCA (3 stimulus components) of training trial averages
umap                UMAP, 2-D, unsupervised
umap_label          UMAP, 2-D, with the reach angle as target
pivae               piVAE: windowed MLP encoder, direction + velocity prior, GIN-flow decoder, Poisson
==================  ======================================================================================

The pipeline's settings reach a method only where it has them, and asking for one it lacks is an error
(:func:`make_method`): ``iterations`` (gradient steps) applies to the CEBRA family only (piVAE counts
``epochs``, a parameter of its own; PCA, dPCA and UMAP are not iterative); ``seed`` to every method with
randomness (the CEBRA baselines' initialisation and their exact, seeded ``time_delta`` sampler included);
``device`` to the torch methods. piVAE's label-informed posterior (the paper's test
embedding, which sees test labels) is the explicit :meth:`~ner.methods.pivae.PiVAE.posterior_mean`.
UMAP and dPCA need the extra ``neural-embeddings-rank[baselines]``; modules load on first use.

``<name>_tuned`` is method ``name`` with the settings ``ner tune`` chose, one set per area; the pipeline
registers it from the tuning records (:mod:`ner.workflow.tuned`).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from ner.data.labels import PAPER_LAYOUT, LabelLayout

__all__ = ["Method", "METHODS", "register_method", "method", "display_name", "make_method", "build_method",
           "construct", "TUNED_SUFFIX", "tuned_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def construct(target: str, **fixed):
    """``module:factory`` called with ``fixed``; the module loads only now (torch, the extras)."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)(**fixed)


@dataclass(frozen=True)
class Method:
    """A named method: how to build it, what a figure calls it, which pipeline settings it takes.

    ``build()`` returns a new unfitted estimator. ``settings`` maps each pipeline setting the method
    takes (``iterations``, ``seed``, ``device``, ``trial_length``) to its estimator parameter; a setting
    mapped to None is honoured outside the estimator. ``params_by_area`` (a tuned method's) holds
    estimator parameters chosen per recording area: a unit of an area missing there cannot be built.
    """

    name: str
    display_name: str
    build: Callable
    settings: Mapping[str, str | None] = field(default_factory=dict)
    params_by_area: Mapping[str, Mapping] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"method name {self.name!r} must be letters, digits, '_', '.' or '-' (it names a folder)")
        if not callable(self.build):
            raise ValueError(f"build of {self.name!r} must be callable, got {type(self.build).__name__}")
        unknown = sorted(set(self.settings) - {"iterations", "seed", "device", "trial_length"})
        if unknown:
            raise ValueError(f"method {self.name!r} maps unknown pipeline settings {unknown}")


TUNED_SUFFIX = "_tuned"
_TORCH = {"iterations": "max_iterations", "seed": "seed", "device": "device"}
_SEARCH_ALL = LabelLayout(n_columns=3, circular=PAPER_LAYOUT.circular, search=(0, 1, 2))


def _ner(**settings):
    return construct("ner.model.estimator:NER", verbose=False, **settings)


def _cebra(output_dimension):
    return construct("ner.methods.cebra_baseline:cebra_baseline", output_dimension=output_dimension)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ner", "NER", _ner, _TORCH),
    Method("ner_own_positives", "NER, positives' own labels", partial(_ner, positive_labels="own"), _TORCH),
    Method("ner_search_all", "NER, search on 3 columns", partial(_ner, label_layout=_SEARCH_ALL), _TORCH),
    Method("cebra3d", "CEBRA 3-D", partial(_cebra, 3), _TORCH),
    Method("cebra16d", "CEBRA 16-D", partial(_cebra, 16), _TORCH),
    Method("pca", "PCA", partial(construct, "ner.methods.pca:TrialAveragePCA"), {"trial_length": "trial_length"}),
    Method("dpca", "dPCA", partial(construct, "ner.methods.dpca:StimulusDPCA"),
           {"trial_length": "trial_length", "seed": "seed"}),
    Method("umap", "UMAP", partial(construct, "ner.methods.umap_baseline:UMAPBaseline", use_labels=False),
           {"seed": "seed"}),
    Method("umap_label", "UMAP + angle", partial(construct, "ner.methods.umap_baseline:UMAPBaseline",
                                                 use_labels=True), {"seed": "seed"}),
    Method("pivae", "piVAE", partial(construct, "ner.methods.pivae:PiVAE"), {"seed": "seed", "device": "device"}),
)}


def register_method(entry: Method) -> None:
    """Add (or replace) a method. For parallel runs its ``build`` must be picklable (a module-level
    function or a partial of one)."""
    if not isinstance(entry, Method):
        raise ValueError(f"register_method takes a ner.methods.Method, got {type(entry).__name__}")
    METHODS[entry.name] = entry


def method(name: str) -> Method:
    """The registry entry of ``name``, or a ValueError listing the names there are."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return METHODS[name]


def tuned_name(name: str) -> str:
    """The name of method ``name`` trained with the settings ``ner tune`` chose (:mod:`ner.workflow.tuned`)."""
    return name + TUNED_SUFFIX


def display_name(name: str) -> str:
    """What a figure calls ``name`` (the name itself for a method not registered)."""
    if name in METHODS:
        return METHODS[name].display_name
    base = name.removesuffix(TUNED_SUFFIX)
    return f"{METHODS[base].display_name}, tuned" if base != name and base in METHODS else name


def make_method(name: str, *, iterations: int | None = None, seed: int | None = 0,
                device: str = "cuda_if_available", trial_length: int | None = None,
                params: Mapping | None = None, area: str | None = None):
    """A new, unfitted estimator for ``name`` with the pipeline's settings and ``params`` applied.

    ``iterations=None`` keeps the method's own default (the paper's 20000 for the CEBRA family); asking
    for iterations of a method without them is a ValueError, as is a ``params`` key it lacks. ``area``
    picks a tuned method's settings (``params`` still override them).
    """
    return build_method(method(name), iterations=iterations, seed=seed, device=device, trial_length=trial_length,
                        params=params, area=area)


def build_method(entry: Method, *, iterations: int | None = None, seed: int | None = 0,
                 device: str = "cuda_if_available", trial_length: int | None = None, params: Mapping | None = None,
                 area: str | None = None):
    """:func:`make_method` for a registry entry itself: what a worker process, which sees only the
    built-in registry, builds a method it was sent."""
    name = entry.name
    if iterations is not None and "iterations" not in entry.settings:
        raise ValueError(f"method {name!r} does not train in iterations (see ner.methods: piVAE counts epochs, "
                         "set them with params; PCA, dPCA and UMAP are not iterative); leave iterations unset for it")
    if entry.params_by_area:
        if area not in entry.params_by_area:
            raise ValueError(f"method {name!r} has settings for area(s) {', '.join(entry.params_by_area)}, "
                             f"not for {area!r}")
        params = {**entry.params_by_area[area], **(params or {})}
    estimator = entry.build()
    given = {"iterations": iterations, "seed": seed, "device": device, "trial_length": trial_length}
    estimator.set_params(**{parameter: given[setting] for setting, parameter in entry.settings.items()
                            if parameter is not None and given[setting] is not None})
    if params:
        unknown = sorted(set(params) - set(estimator.get_params(deep=False)))
        if unknown:
            raise ValueError(f"method {name!r} has no parameter(s) {', '.join(unknown)}")
        estimator.set_params(**params)
    return estimator
