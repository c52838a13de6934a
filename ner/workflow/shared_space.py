"""One latent space for several sessions: decoded across sessions with no alignment, and a new day
calibrated into it.

A group is a set of (session, area) units, one encoder each, trained together into one latent space
(multi-session NER, :meth:`ner.NER.fit` on a list, or stock CEBRA's multi-session model) on their
training trials only. Its embeddings are decoded across units with no rotation
(:func:`ner.evaluation.cross_session.cross_session_matrices` with ``align=False``), beside the
single-session models aligned by Procrustes of ``results/cross_session_<subject>.npz``.

Calibration holds one unit of a group out, trains the others, then fits only the held-out unit's
encoder (:meth:`ner.NER.add_session`) on its first few training trials and decodes its test trials
with the decoder of the trained units, against a NER trained on the same trials from scratch.

Files (each with its provenance; a file whose request is unchanged is kept)::

    shared_space/<group>/<variant>_<iterations>it_seed<k>.npz   embeddings of every unit of the group
    shared_space/<group>/validation/...              the same, fitted on the first training trials and
                                                     scored on the last (settings chosen there)
    results/shared_space_<group>[_validation].npz    no-alignment matrices of every model and seed
    results/calibration_<group>_<unit>[_<settings>]_seed<k>.npz  decoding against calibration trials, iterations
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ner.data.labels import N_DIRECTIONS, direction_classes
from ner.data.sessions import available_sessions, load_session, resolve_data_dir
from ner.evaluation.cross_session import SplitEmbedding, cross_session_matrices
from ner.evaluation.decoding import SCORES, TrialDecoder, score_trials
from ner.evaluation.statistics import off_diagonal
from ner.workflow.fit import checkpoint_path, seed_everything
from ner.workflow.store import (
    jsonable,
    matches,
    publish,
    read_npz,
    result_path,
    settings_of,
)
from ner.workflow.tune import split_training

__all__ = ["Group", "GROUPS", "MODELS", "MULTI_SESSION", "group_units", "fit_shared_space", "shared_space_table",
           "best_variant",
           "calibrate", "CALIBRATION_TRIALS", "ADAPT_ITERATIONS", "ADAPT_LEARNING_RATE"]

MODELS = ("ner", "cebra")
#: The pipeline's method each shared-space model extends to several sessions (``ner reproduce --groups``).
MULTI_SESSION = {"ner": "ner", "cebra3d": "cebra"}
#: Calibration trial counts; None is every training trial of the held-out unit.
CALIBRATION_TRIALS = (5, 10, 20, None)
ADAPT_ITERATIONS = (100, 250, 500, 1000, 2000)
# A new encoder learns from a few trials at a larger step than the paper's 1e-4: with 20 trials of
# Chewie_20161007 M1 into the other Chewie M1 days, 1e-2 gave test position R^2 0.874 / 0.913 / 0.890 after
# 250 / 1000 / 2000 iterations, 1e-3 0.859 / 0.848 / 0.829 (seed 0).
ADAPT_LEARNING_RATE = 1e-2


@dataclass(frozen=True)
class Group:
    """Units recorded from ``areas`` in sessions whose name starts with one of ``subjects``; with
    ``every_area``, only sessions that record all of them."""

    subjects: tuple[str, ...]
    areas: tuple[str, ...]
    every_area: bool = False


GROUPS = {
    "Chewie_M1": Group(("Chewie",), ("M1",)),            # across days, 2015 and 2016
    "Mihili_M1": Group(("Mihili",), ("M1",)),
    "Chewie_M1_PMd": Group(("Chewie",), ("M1", "PMd"), every_area=True),
    "Mihili_M1_PMd": Group(("Mihili",), ("M1", "PMd"), every_area=True),
    "Chewie_Mihili_M1": Group(("Chewie", "Mihili"), ("M1",)),  # across monkeys
    "Han_S1": Group(("Han",), ("S1",)),
}


def group_units(group: str, data_dir=None) -> list[tuple[str, str, Path]]:
    """(session, area, file) of every unit of ``group`` found in ``data_dir``, areas then sessions."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; groups: {', '.join(GROUPS)}")
    spec = GROUPS[group]
    found = [info for info in available_sessions(resolve_data_dir(data_dir))
             if info.name.startswith(spec.subjects)
             and (set(spec.areas) <= set(info.areas) if spec.every_area else set(spec.areas) & set(info.areas))]
    units = [(info.name, area, info.path) for area in spec.areas for info in found if area in info.areas]
    if len(units) < 2:
        raise ValueError(f"group {group} needs two or more units; found {len(units)} in "
                         f"{resolve_data_dir(data_dir)}")
    return units


def _estimator(model: str, *, iterations, batch_size, seed, positives, device, verbose, settings):
    if model == "ner":
        from ner.model import NER

        return NER(max_iterations=iterations, batch_size=batch_size, seed=seed, device=device,
                   multisession_positives=positives, verbose=verbose, **settings)
    if model == "cebra":
        from ner.methods.cebra_baseline import cebra_baseline

        # The cebra3d baseline's settings; stock CEBRA's multi-session sampler draws the positives.
        return cebra_baseline(max_iterations=iterations, batch_size=batch_size, seed=seed, device=device,
                              verbose=verbose, **settings)
    raise ValueError(f"unknown shared-space model {model!r}; models: {', '.join(MODELS)}")


def _cache_path(out_dir, group, model, positives, iterations, seed, settings, validation) -> Path:
    variant = _named(model if model == "cebra" else f"{model}_{positives}", settings)
    return _group_folder(out_dir, group, validation) / f"{variant}_{iterations}it_seed{seed}.npz"


def _named(stem: str, settings: Mapping) -> str:
    """``stem`` and every setting as ``_<name><value>``, sorted: files made with other settings sit beside."""
    return "_".join([stem, *(f"{name}{value}" for name, value in sorted(settings.items()))])


def _group_folder(out_dir, group, validation) -> Path:
    return Path(out_dir) / "shared_space" / group / ("validation" if validation else "")


def _splits(session, validation: bool):
    """(fit, scored) trials of one unit: training and test, or for ``validation`` the first and the
    last training trials (:func:`~ner.workflow.tune.split_training`), so that no test trial is read."""
    return split_training(session.train) if validation else (session.train, session.test)


def fit_shared_space(group: str, model: str = "ner", *, data_dir=None, out_dir="data_NER", seed: int = 0,
                     iterations: int = 5000, batch_size: int = 128, positives: str = "across",
                     settings: Mapping | None = None, validation: bool = False,
                     device: str = "cpu", force: bool = False, verbose: bool = False) -> Path:
    """Train ``model`` on the training trials of every unit of ``group`` into one latent space and
    cache the embeddings of both splits; returns the cache. ``batch_size`` is per unit (128 for four
    units ranks the paper's 512 references a step); ``settings`` overrides the model's other
    parameters (e.g. ``temperature``) and names the cache. With ``validation``, the model trains on
    the first training trials and the cache's "test" split holds the last ones, under
    ``shared_space/<group>/validation/``: settings are chosen there without reading a test trial."""
    settings = dict(settings or {})
    units = group_units(group, data_dir)
    sessions = [load_session(path, area) for _, area, path in units]
    estimator = _estimator(model, iterations=iterations, batch_size=batch_size, seed=seed,
                           positives=positives, device=device, verbose=verbose, settings=settings)
    request = {"group": group, "model": model, "seed": seed, "units": [f"{s}_{a}" for s, a, _ in units],
               "parameters": settings_of(estimator), "session_sha256": [s.sha256 for s in sessions],
               **({"split": "validation"} if validation else {})}
    target = _cache_path(out_dir, group, model, positives, iterations, seed, settings, validation)
    if not force and matches(target, request):
        checkpoint_path(estimator, target, resume=False)  # one a kill left after the cache was written
        return target
    seed_everything(seed)
    trains, tests = zip(*(_splits(s, validation) for s in sessions))
    checkpoint = checkpoint_path(estimator, target, resume=not force)
    estimator.fit([t.neural for t in trains], [t.labels for t in trains],
                  **({"checkpoint": checkpoint} if checkpoint else {}))
    arrays = {}
    for number, (train, test) in enumerate(zip(trains, tests)):
        for split, part in (("train", train), ("test", test)):
            arrays[f"{split}_embedding_{number}"] = estimator.transform(part.neural, session_id=number)
            arrays[f"{split}_labels_{number}"] = part.labels
    publish(target, {**arrays, "trial_length": np.array([s.trial_length for s in sessions]),
                     "loss": np.asarray(estimator.solver_.log["total"], dtype=np.float32),
                     # NER's final loss of every restart, the kept one lowest
                     **({"restart_losses": np.array(estimator.restart_losses_)}
                        if hasattr(estimator, "restart_losses_") else {})}, request)
    if checkpoint:
        from ner.model.checkpoint import remove

        remove(checkpoint)
    return target


def _split_embeddings(cache: dict) -> dict[str, SplitEmbedding]:
    return {unit: SplitEmbedding(*(cache[f"{split}_{kind}_{number}"] for split in ("train", "test")
                                   for kind in ("embedding", "labels")))
            for number, unit in enumerate(cache["provenance"]["units"])}


def _trial_length(cache: dict) -> int:
    lengths = set(cache["trial_length"].tolist())
    if len(lengths) != 1:
        raise ValueError(f"the units of {cache['provenance']['group']} have trial lengths {sorted(lengths)}; "
                         "one matrix needs one")
    return lengths.pop()


def shared_space_table(group: str, caches: Sequence[Path] | None = None, out_dir="data_NER",
                       validation: bool = False) -> Path:
    """``results/shared_space_<group>.npz``: for each cache (model, seed), the linear decoders'
    matrices with no alignment, ``<score>`` (caches x units x units), entry [c, i, j] the decoder of
    unit i's training trials on unit j's test trials; ``variants`` (the cache names), ``models``,
    ``seeds``, ``iterations``, ``units``. ``caches`` defaults to every cache of the group; with
    ``validation``, every validation cache, into ``results/shared_space_<group>_validation.npz``."""
    if caches is None:
        caches = sorted(_group_folder(out_dir, group, validation).glob("*.npz"))
    read = [read_npz(path) for path in caches]
    if not read:
        raise ValueError(f"no shared-space caches of {group} to tabulate")
    units = read[0]["provenance"]["units"]
    if any(cache["provenance"]["units"] != units for cache in read):
        raise ValueError(f"the caches of {group} hold different units")
    matrices = [cross_session_matrices(_split_embeddings(cache), _trial_length(cache), align=False)
                for cache in read]
    target = result_path(out_dir, f"shared_space_{group}" + ("_validation" if validation else ""))
    publish(target, {"variants": np.array([Path(path).stem for path in caches]),
                     "models": np.array([c["provenance"]["model"] for c in read]),
                     "iterations": np.array([c["provenance"]["parameters"]["max_iterations"] for c in read]),
                     "seeds": np.array([c["provenance"]["seed"] for c in read]), "units": np.array(units),
                     **{score: np.stack([m[score] for m in matrices]) for score in SCORES}},
            {"table": "shared_space", "group": group, "protocol": "no alignment",
             "scored": "validation trials" if validation else "test trials",
             "inputs": [jsonable(c["provenance"]) for c in read]})
    return target


def best_variant(table: dict, scores: Sequence[str] = ("position_r2", "velocity_r2")) -> str:
    """The variant of a shared-space table (its cache name without ``_seed<k>``) whose off-diagonal
    medians of ``scores``, summed, are highest; a variant with several seeds counts by their mean, so
    that a seed that failed (e.g. sessions settled as mirror images) counts against its settings.
    Meant for a ``validation`` table: the settings chosen there are then trained on all training trials."""
    variants = [str(name).rsplit("_seed", 1)[0] for name in table["variants"]]
    total = {variant: np.mean([sum(np.median(off_diagonal(table[score][row])) for score in scores)
                                 for row, name in enumerate(variants) if name == variant])
             for variant in dict.fromkeys(variants)}
    return max(total, key=total.get)


def _first_trials(session, count):
    """The first ``count`` training trials (all of them for None): a new day's calibration."""
    train = session.train
    if count is None or count >= train.n_trials:
        return train
    return train.trials(0, count)


def calibrate(group: str, held_out: str, *, data_dir=None, out_dir="data_NER", seed: int = 0,
              iterations: int = 5000, batch_size: int = 128, trials: Iterable = CALIBRATION_TRIALS,
              adapt_iterations: Iterable[int] = ADAPT_ITERATIONS, adapt_learning_rate: float = ADAPT_LEARNING_RATE,
              settings: Mapping | None = None, device: str = "cpu", force: bool = False,
              verbose: bool = False) -> Path:
    """A new day in minutes: train multi-session NER on the units of ``group`` but ``held_out``
    (``<session>_<area>``), then for each calibration trial count and adaptation length fit only the
    held-out unit's encoder on its first training trials and decode its test trials with the decoder
    fitted on the trained units' training trials (no rotation). Beside it, NER trained from scratch on
    the same trials for as many iterations at the same ``adapt_learning_rate``, decoded by its own
    decoder fitted on them (NaN where those trials lack a reach direction, so that no such decoder can
    be fitted). The multi-session fit keeps the paper's learning rate; ``settings`` overrides NER's
    other parameters in both models (as :func:`fit_shared_space`'s).

    ``results/calibration_<group>_<held_out>_seed<k>.npz`` (with ``_<name><value>`` for each setting before
    ``_seed``) holds ``trials`` (T; the count used, all training
    trials for the last) and ``iterations`` (I), and ``adapted_<score>`` and ``scratch_<score>`` (T x I).
    """
    from ner.model import NER

    units = group_units(group, data_dir)
    names = [f"{s}_{a}" for s, a, _ in units]
    if held_out not in names:
        raise ValueError(f"{held_out} is not a unit of {group}; its units: {', '.join(names)}")
    trials, adapt_iterations = list(trials), sorted(int(i) for i in adapt_iterations)
    settings = dict(settings or {})
    sessions = {name: load_session(path, area) for name, (_, area, path) in zip(names, units)}
    new = sessions.pop(held_out)
    request = {"table": "calibration", "group": group, "held_out": held_out, "seed": seed,
               "iterations": iterations, "batch_size": batch_size, "trials": jsonable(trials),
               "adapt_iterations": adapt_iterations, "adapt_learning_rate": adapt_learning_rate,
               **({"settings": jsonable(settings)} if settings else {}),
               "session_sha256": sorted(s.sha256 for s in (new, *sessions.values()))}
    target = result_path(out_dir, f"{_named(f'calibration_{group}_{held_out}', settings)}_seed{seed}")
    if not force and matches(target, request):
        return target

    seed_everything(seed)
    trains = [s.train for s in sessions.values()]
    model = NER(max_iterations=iterations, batch_size=batch_size, seed=seed, device=device, verbose=verbose,
                **settings)
    model.fit([t.neural for t in trains], [t.labels for t in trains])
    decoder = TrialDecoder().fit(np.concatenate([model.transform(t.neural, session_id=i)
                                                 for i, t in enumerate(trains)]),
                                 np.concatenate([t.labels for t in trains]))
    test = new.test
    shape = (len(trials), len(adapt_iterations))
    adapted = {score: np.full(shape, np.nan) for score in SCORES}
    scratch = {score: np.full(shape, np.nan) for score in SCORES}
    used = []
    steps = tqdm(total=shape[0] * shape[1], desc=f"calibrating {held_out}", disable=not verbose)
    for row, count in enumerate(trials):
        calibration = _first_trials(new, count)
        used.append(calibration.n_trials)
        batch = min(model.batch_size, len(calibration.neural))
        # A model from scratch has no decoder but its own, which needs trials of all 8 directions.
        every_direction = np.unique(direction_classes(calibration.angle)).size == N_DIRECTIONS
        for column, steps_count in enumerate(adapt_iterations):
            trial_model = copy.deepcopy(model)  # each calibration starts from the same model
            session_id = trial_model.add_session(calibration.neural, calibration.labels,
                                                 max_iterations=steps_count, seed=seed, batch_size=batch,
                                                 learning_rate=adapt_learning_rate)
            scores = score_trials(decoder, trial_model.transform(test.neural, session_id=session_id),
                                  test.labels, new.trial_length)
            for score in SCORES:
                adapted[score][row, column] = scores[score]
            if every_direction:
                own = NER(max_iterations=steps_count, batch_size=batch, seed=seed, device=device,
                          learning_rate=adapt_learning_rate, verbose=False, **settings).fit(calibration.neural,
                                                                                            calibration.labels)
                own_decoder = TrialDecoder().fit(own.transform(calibration.neural), calibration.labels)
                own_scores = score_trials(own_decoder, own.transform(test.neural), test.labels, new.trial_length)
                for score in SCORES:
                    scratch[score][row, column] = own_scores[score]
            steps.update()
    steps.close()
    publish(target, {"trials": np.array(used), "iterations": np.array(adapt_iterations),
                     **{f"adapted_{s}": v for s, v in adapted.items()},
                     **{f"scratch_{s}": v for s, v in scratch.items()}}, request)
    return target
