"""The ``ner`` command: demo, sessions, fetch, compare, reproduce, figures, mc-maze, tune, shared-space."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path


def _demo(args) -> int:
    from ner.data import load_session, synthetic_session
    from ner.demo import run_demo

    session = (load_session(args.session, area=args.area) if args.session
               else synthetic_session(seed=args.seed))
    figure = Path(args.out) / f"demo_{session.name}_{session.area}"
    results = run_demo(session, iterations=args.iterations, seed=args.seed,
                       device=args.device, figure=figure,
                       verbose=not args.json)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"\n{session.name} {session.area}: {session.n_trials} trials "
          f"({session.train.n_trials} train / {session.test.n_trials} test), "
          f"{args.iterations} iterations")
    metrics = list(next(iter(results.values())))
    print(f"{'':8s}" + "".join(f"{m:>22s}" for m in metrics))
    for name, row in results.items():
        print(f"{name:8s}" + "".join(f"{row[m]:22.3f}" for m in metrics))
    print(f"figure: {figure}.png / .pdf")
    return 0


def _sessions(args) -> int:
    from ner.data import available_sessions
    from ner.data.sessions import resolve_data_dir

    found = available_sessions(args.data_dir)
    folder = resolve_data_dir(args.data_dir)
    if not found:
        print(f"no session files in {folder}; `ner fetch` downloads them")
        return 0
    print(f"{len(found)} sessions in {folder}")
    for info in found:
        print(f"  {info.name:20s} {' '.join(info.areas)}")
    return 0


def _fetch(args) -> int:
    from ner.data import fetch

    if args.paper_results:
        return _fetch_paper_results(args)
    paths = fetch(args.names or None, dest=args.dest, base_url=args.base_url)
    for path in paths:
        print(path)
    return 0


def _fetch_paper_results(args) -> int:
    from ner.data.download import fetch_paper_results, fetched_results_dir, paper_results_registry

    if args.names:
        raise ValueError(f"--paper-results fetches every stored result file of the paper; drop {' '.join(args.names)}")
    folder = fetch_paper_results(dest=args.dest, base_url=args.base_url)
    print(f"{len(paper_results_registry())} stored result files of the paper (its data_NER/Fig4, Fig5, Fig6, Fig8), "
          f"verified, in {folder}")
    if folder.resolve() == fetched_results_dir().resolve():
        print("`ner figures` now draws the paper's numbers beside ours (Figs 4-6, 13, 14) and figures 8 and 11")
    elif folder.name == fetched_results_dir().name:
        print(f"the figures look in {fetched_results_dir()}; point them here with NER_REFERENCE_DIR={folder.parent}")
    else:
        print(f"the figures look in {fetched_results_dir()}, or in $NER_REFERENCE_DIR/{fetched_results_dir().name}: "
              f"rename {folder} to <folder>/{fetched_results_dir().name} and set NER_REFERENCE_DIR=<folder>")
    return 0


def _compare(args) -> int:
    from ner.reference.parity import compare, format_report
    from ner.workflow.store import jsonable

    if args.published:
        return _published(args)
    result = compare(args.upstream, methods=args.methods, figures=args.figures)
    print(json.dumps(jsonable(result), indent=1) if args.json else format_report(result))
    return 0


def _published(args) -> int:
    from ner.workflow.published import build_published, format_published, group_medians, published_request
    from ner.workflow.store import cache_dir, jsonable, matches, read_npz, result_path

    out_dir = Path(args.out) if args.out else cache_dir()
    target = result_path(out_dir, "published")
    # The pipeline's table where it was made from these caches; else computed now (not written).
    table = (read_npz(target) if matches(target, published_request(out_dir, args.upstream))
             else build_published(out_dir, args.upstream))
    table.pop("provenance", None)
    if args.json:
        print(json.dumps(jsonable({**table, "medians": group_medians(table)}), indent=1))
    else:
        print(format_published(table))
    return 0


def _method_params(items) -> dict:
    """``["pivae.epochs=100", "ner.batch_size=256"]`` -> ``{"pivae": {"epochs": 100}, "ner": {...}}``."""
    params = {}
    for item in items or ():
        key, _, text = item.partition("=")
        method, _, name = key.partition(".")
        if not (method and name and text):
            raise ValueError(f"--set {item!r} must read METHOD.PARAMETER=VALUE, e.g. pivae.epochs=100")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text  # a bare word: a string
        params.setdefault(method, {})[name] = value
    return params


def _reproduce(args) -> int:
    from ner.workflow.run import format_summary, run_pipeline

    summary = run_pipeline(data_dir=args.data_dir, out_dir=args.out, methods=args.methods,
                           sessions=args.sessions, areas=args.areas, iterations=args.iterations,
                           seeds=args.seeds, n_jobs=args.jobs, force=args.force, device=args.device,
                           progress=not args.quiet, snapshots=args.snapshots, backend=args.backend,
                           method_params=_method_params(args.set), reference_dir=args.reference,
                           groups=args.groups)
    print(format_summary(summary))
    return 1 if summary["failed"] else 0


def _figures(args) -> int:
    from ner.viz.figures import figures_dir
    from ner.viz.notebooks import run_notebooks

    timings = run_notebooks(args.only, timeout=args.timeout, progress=not args.quiet)
    for name, seconds in timings.items():
        print(f"  {name:40s} {seconds:7.1f} s")
    print(f"{len(timings)} notebooks, {sum(timings.values()):.0f} s; figures in {figures_dir()}")
    return 0


def _mc_maze(args) -> int:
    from ner.data.maze import parse_selection
    from ner.workflow.maze import train_mc_maze

    selections = None
    if args.selections:
        selections = [parse_selection(item) if "=" in item else item for item in args.selections]
    params = {method: {"batch_size": args.batch_size} for method in args.methods} if args.batch_size else None
    summary = train_mc_maze(args.nwb, out_dir=args.out, methods=args.methods, selections=selections,
                            iterations=args.iterations, seed=args.seed, device=args.device,
                            method_params=params, force=args.force, verbose=not args.quiet,
                            angle_label=args.angle_label, condition_column=args.condition_column, area=args.area)
    print(f"mc_maze: {len(summary['computed'])} computed, {len(summary['skipped'])} up to date, "
          f"{summary['wall_time_s']:.1f} s; caches in {Path(args.out) / 'mc_maze'}")
    return 0


def _tune(args) -> int:
    from ner.data import load_session
    from ner.workflow.tune import format_tuning, tune, tuning_path

    session = load_session(args.session, area=args.area, data_dir=args.data_dir)
    for name in dict.fromkeys(args.methods):
        record = tune(session, name, iterations=args.iterations, n_trials=args.trials, out_dir=args.out,
                      storage=args.storage, workers=args.workers, seed=args.seed, device=args.device,
                      validation_fraction=args.validation, progress=not args.quiet)
        print(format_tuning(record))
        print(f"  settings in {tuning_path(args.out, name, session.name, session.area)}")
    return 0


def _shared_space(args) -> int:
    from ner.workflow import shared_space
    from ner.workflow.store import read_npz

    params = _method_params(args.set)
    common = dict(data_dir=args.data_dir, out_dir=args.out, iterations=args.iterations, batch_size=args.batch_size,
                  device=args.device, verbose=not args.quiet)
    for group in args.groups:
        for seed, model in itertools.product(args.seeds, args.models):
            path = shared_space.fit_shared_space(group, model, seed=seed, positives=args.positives,
                                                 settings=params.get(model), validation=args.validation, **common)
            print(f"{group} {model} seed {seed}: {path}")
        table = shared_space.shared_space_table(group, out_dir=args.out, validation=args.validation)
        best = f" (best on validation: {shared_space.best_variant(read_npz(table))})" if args.validation else ""
        print(f"{group}: {table}{best}")
        units = {f"{s}_{a}" for s, a, _ in shared_space.group_units(group, args.data_dir)}
        for held_out, seed in itertools.product([u for u in args.calibrate or () if u in units], args.seeds):
            print(shared_space.calibrate(group, held_out, seed=seed, settings=params.get("ner"),
                                         adapt_iterations=args.adapt_iterations or shared_space.ADAPT_ITERATIONS,
                                         **common))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ner", description="Neural Embeddings Rank on stock CEBRA.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="train NER and CEBRA on one session, report decoding, draw Fig 1")
    demo.add_argument("--session", help="session name or .mat path "
                      "(default: a synthetic reaching session)")
    demo.add_argument("--area", default="M1", help="M1, PMd or S1 (default M1)")
    demo.add_argument("--iterations", type=int, default=2000,
                      help="training steps per method (paper: 20000; default 2000)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="cuda_if_available")
    demo.add_argument("--out", default="ner_demo", help="folder for the figure")
    demo.add_argument("--json", action="store_true", help="print the numbers as JSON")
    demo.set_defaults(run=_demo)

    sessions = commands.add_parser("sessions", help="list the session files found")
    sessions.add_argument("--data-dir", help="default: $NER_DATA_DIR, else ./data")
    sessions.set_defaults(run=_sessions)

    fetch = commands.add_parser(
        "fetch", help="download session files (or, with --paper-results, the paper's stored results) from "
        "the public NER repository, checksummed")
    fetch.add_argument("names", nargs="*", help="session names (default: all)")
    fetch.add_argument("--paper-results", action="store_true",
                       help="instead: the paper's stored results (the original authors' data_NER/Fig4, Fig5, "
                       "Fig6 and Fig8, 12 MB), which the figures show beside ours and figures 8 and 11 decode; "
                       "into $NER_DATA_DIR/upstream_data_NER, else the checkout's data/upstream_data_NER")
    fetch.add_argument("--dest", help="default: $NER_DATA_DIR, else ./data (sessions); see --paper-results")
    fetch.add_argument("--base-url", help="mirror of the repository's raw files (default: $NER_FETCH_URL, "
                       "else GitHub at the pinned commit)")
    fetch.set_defaults(run=_fetch)

    compare = commands.add_parser(
        "compare", help="recompute the paper's numbers from an original data_NER/ "
        "folder, legacy protocol beside the stored values, then corrected")
    compare.add_argument("--upstream", required=True,
                         help="the original repository's data_NER/ folder")
    compare.add_argument("--methods", nargs="*", help="default: every method found")
    compare.add_argument("--figures", nargs="*", help="fig4_M1 fig4_PMd_S1 fig5 fig5_knn fig6 (default: all; "
                         "fig5_knn's grid searches take minutes)")
    compare.add_argument("--published", action="store_true", help="instead: the stored Fig 4 numbers of every "
                         "unit beside ours (paper's protocol and corrected), with medians per area and monkey")
    compare.add_argument("--out", help="for --published: the folder of our caches (default: $NER_CACHE_DIR, "
                         "else the repository's data_NER)")
    compare.add_argument("--json", action="store_true", help="the whole report as JSON (counts under 'counts' "
                         "and 'totals')")
    compare.set_defaults(run=_compare)

    reproduce = commands.add_parser(
        "reproduce", help="train every method on every session and area into "
        "data_NER/ (resumable), then the decoding and cross-session tables and the figure data")
    _add_reproduce_arguments(reproduce)
    reproduce.set_defaults(run=_reproduce)

    figures = commands.add_parser(
        "figures", help="execute the figure notebooks: data_NER/ -> figures/ (PDF and PNG)")
    figures.add_argument("--only", nargs="+", help="notebook number prefixes, e.g. 01 12 (default: all)")
    figures.add_argument("--timeout", type=int, default=600, help="seconds per notebook cell")
    figures.add_argument("--quiet", action="store_true", help="no progress bar")
    figures.set_defaults(run=_figures)

    mc_maze = commands.add_parser(
        "mc-maze", help="train NER and CEBRA on MC_Maze (DANDI 000128) maze conditions "
        "into data_NER/mc_maze/ (resumable): the data of Figs 8 and 11")
    _add_mc_maze_arguments(mc_maze)
    mc_maze.set_defaults(run=_mc_maze)

    tune = commands.add_parser(
        "tune", help="search the CEBRA-family hyperparameters of one session with Optuna (validation trials "
        "carved from the training trials) into data_NER/tuning/ (resumable, shared by workers)")
    _add_tune_arguments(tune)
    tune.set_defaults(run=_tune)

    shared = commands.add_parser(
        "shared-space", help="multi-session NER (and CEBRA) per group of units into one latent space, decoded "
        "across units with no alignment; --calibrate fits a held-out unit into it (data_NER/shared_space/)")
    _add_shared_space_arguments(shared)
    shared.set_defaults(run=_shared_space)
    return parser


def _add_reproduce_arguments(parser):
    from ner.workflow.run import BACKENDS, DEFAULT_METHODS

    parser.add_argument("--data-dir", help="session files (default: $NER_DATA_DIR, else ./data)")
    parser.add_argument("--out", default="data_NER", help="cache folder (default data_NER)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help=f"default: {' '.join(DEFAULT_METHODS)}; a name of ner.methods.METHODS, or NAME_tuned (`ner tune`)")
    parser.add_argument("--sessions", nargs="+", help="default: every session found")
    parser.add_argument("--areas", nargs="+", help="default: every area each session records")
    parser.add_argument("--iterations", type=int, help="training steps of the CEBRA-family methods "
                        "(default: the paper's 20000); an error for methods without iterations")
    parser.add_argument("--set", nargs="+", metavar="METHOD.PARAMETER=VALUE",
                        help="override a method's parameter, e.g. pivae.epochs=100 ner.batch_size=256")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="fit each method with randomness once per seed (default: 0)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel units (-1: all cores)")
    parser.add_argument("--backend", choices=BACKENDS, default="loky",
                        help="where parallel units run: this machine (loky) or a Dask cluster")
    parser.add_argument("--device", default="cuda_if_available")
    parser.add_argument("--snapshots", type=int, nargs="+",
                        help="iterations at which CEBRA-family methods also store their embeddings")
    parser.add_argument("--reference", default=os.environ.get("NER_REFERENCE_DIR"),
                        help="the original authors' results (the folder holding upstream_data_NER/), "
                        "for the parity numbers (default: $NER_REFERENCE_DIR)")
    parser.add_argument("--groups", nargs="+", help="also a shared latent space per group (`ner shared-space`)")
    parser.add_argument("--force", action="store_true", help="recompute even up-to-date caches")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_mc_maze_arguments(parser):
    from ner.data.maze import ANGLE_LABELS, CONDITION_COLUMNS, SELECTIONS
    from ner.workflow.maze import DEFAULT_ITERATIONS, DEFAULT_METHODS

    parser.add_argument("--nwb", required=True, help="the MC_Maze NWB file (`dandi download DANDI:000128`)")
    parser.add_argument("--out", default="data_NER", help="cache folder (default data_NER); caches go to "
                        "<out>/mc_maze/<method>/<selection>.npz")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help=f"default: {' '.join(DEFAULT_METHODS)}")
    parser.add_argument("--selections", nargs="+", metavar="SELECTION",
                        help="the paper's selections to fit (default: all of them: "
                        f"{' '.join(SELECTIONS)}), or your own as NAME=CONDITIONS[/VERSIONS], e.g. mine=13,38/0")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help=f"training steps (the original's MC_Maze runs: {DEFAULT_ITERATIONS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, help="override every method's batch size (paper: 512)")
    parser.add_argument("--device", default="cuda_if_available")
    parser.add_argument("--area", help="units of one area, e.g. M1 or PMd (default: every unit)")
    parser.add_argument("--angle-label", choices=ANGLE_LABELS, default="zero",
                        help="third label column: zeros as the original's MC_Maze runs (default) or the "
                        "target's angle in degrees")
    parser.add_argument("--condition-column", choices=CONDITION_COLUMNS, default="trial_type",
                        help="trials-table column the selections' condition ids refer to (default trial_type)")
    parser.add_argument("--force", action="store_true", help="recompute even up-to-date caches")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_tune_arguments(parser):
    parser.add_argument("--session", required=True, help="session name or .mat path")
    parser.add_argument("--area", default="M1", help="M1, PMd or S1 (default M1)")
    parser.add_argument("--data-dir", help="session files (default: $NER_DATA_DIR, else ./data)")
    parser.add_argument("--methods", nargs="+", default=["ner", "cebra3d"],
                        help="CEBRA-family methods of ner.methods.METHODS, one study each (default: ner cebra3d)")
    parser.add_argument("--iterations", type=int, required=True, help="training steps of every trial (fixed)")
    parser.add_argument("--trials", type=int, default=30,
                        help="the budget: finished trials per study, over all workers and reruns (default 30)")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes per study (default 1)")
    parser.add_argument("--storage", help="an Optuna database URL (sqlite:///path.db, postgresql://...) or a "
                        "journal file path, shared by workers and machines (default: "
                        "sqlite:///<out>/tuning/studies.db)")
    parser.add_argument("--out", default="data_NER", help="folder of the results, <out>/tuning/ (default data_NER)")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every trial (default 0)")
    parser.add_argument("--validation", type=float, default=0.2,
                        help="share of the training trials, the last ones, that validate (default 0.2)")
    parser.add_argument("--device", default="cuda_if_available")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_shared_space_arguments(parser):
    # Names are checked where they are used (ner.workflow.shared_space), so that `ner --help` imports nothing.
    parser.add_argument("--groups", nargs="+", default=["Chewie_M1"],
                        help="groups of units, one shared latent space each: Chewie_M1 (default), Mihili_M1, "
                        "Chewie_M1_PMd, Mihili_M1_PMd, Chewie_Mihili_M1, Han_S1")
    parser.add_argument("--models", nargs="+", default=["ner", "cebra"], help="ner, cebra (default both)")
    parser.add_argument("--data-dir", help="session files (default: $NER_DATA_DIR, else ./data)")
    parser.add_argument("--out", default="data_NER", help="cache folder (default data_NER)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--iterations", type=int, default=5000, help="training steps (default 5000)")
    parser.add_argument("--batch-size", type=int, default=128, help="references per unit a step (default 128)")
    parser.add_argument("--positives", choices=["across", "within"], default="across",
                        help="NER: positives searched in another unit (default) or the reference's own")
    parser.add_argument("--set", nargs="+", metavar="MODEL.PARAMETER=VALUE",
                        help="override a model's parameter, e.g. ner.temperature=0.5 (names the caches)")
    parser.add_argument("--validation", action="store_true",
                        help="fit on the first 80%% of each unit's training trials, score the last 20%% "
                        "(shared_space/<group>/validation/): choose settings without a test trial")
    parser.add_argument("--calibrate", nargs="+", metavar="UNIT",
                        help="units (<session>_<area>) to hold out and calibrate into the others' space")
    parser.add_argument("--adapt-iterations", nargs="+", type=int,
                        help="calibration lengths, each from the same trained space (default 100 250 500 1000 2000)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, OSError, RuntimeError, ImportError) as error:
        print(f"ner {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
