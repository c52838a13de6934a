"""The ``ner`` command: demo, sessions, fetch, compare, reproduce, figures."""

from __future__ import annotations

import argparse
import json
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

    paths = fetch(args.names or None, dest=args.dest, base_url=args.base_url)
    for path in paths:
        print(path)
    return 0


def _compare(args) -> int:
    from ner.evaluation.parity import main_compare

    print(main_compare(args.upstream, as_json=args.json, methods=args.methods))
    return 0


def _reproduce(args) -> int:
    from ner.pipeline import run_from_args

    return run_from_args(args)


def _figures(args) -> int:
    from ner.figures import figures_dir, run_notebooks

    timings = run_notebooks(args.only, timeout=args.timeout, progress=not args.quiet)
    for name, seconds in timings.items():
        print(f"  {name:40s} {seconds:7.1f} s")
    print(f"{len(timings)} notebooks, {sum(timings.values()):.0f} s; figures in {figures_dir()}")
    return 0


def _mc_maze(args) -> int:
    from ner.mc_maze import run_from_args

    try:
        return run_from_args(args)
    except ImportError as error:  # pynwb is the optional extra ner[nwb]
        print(f"ner mc-maze: {error}", file=sys.stderr)
        return 2


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
        "fetch", help="download session files from the public NER repository")
    fetch.add_argument("names", nargs="*", help="session names (default: all)")
    fetch.add_argument("--dest", help="default: $NER_DATA_DIR, else ./data")
    fetch.add_argument("--base-url", help="mirror of the repository's raw files")
    fetch.set_defaults(run=_fetch)

    compare = commands.add_parser(
        "compare", help="recompute the paper's numbers from an original data_NER/ "
        "folder, legacy protocol beside the stored values, then corrected")
    compare.add_argument("--upstream", required=True,
                         help="the original repository's data_NER/ folder")
    compare.add_argument("--methods", nargs="*", help="default: every method found")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(run=_compare)

    from ner.pipeline import add_arguments

    reproduce = commands.add_parser(
        "reproduce", help="train every method on every session and area into "
        "data_NER/ (resumable), then the decoding and cross-session tables")
    add_arguments(reproduce)
    reproduce.set_defaults(run=_reproduce)

    figures = commands.add_parser(
        "figures", help="execute the figure notebooks: data_NER/ -> figures/ (PDF and PNG)")
    figures.add_argument("--only", nargs="+", help="notebook number prefixes, e.g. 01 12 (default: all)")
    figures.add_argument("--timeout", type=int, default=600, help="seconds per notebook cell")
    figures.add_argument("--quiet", action="store_true", help="no progress bar")
    figures.set_defaults(run=_figures)

    from ner.mc_maze import add_arguments as add_mc_maze_arguments

    mc_maze = commands.add_parser(
        "mc-maze", help="train NER and CEBRA on MC_Maze (DANDI 000128) maze conditions "
        "into data_NER/mc_maze/ (resumable): the data of Figs 8 and 11")
    add_mc_maze_arguments(mc_maze)
    mc_maze.set_defaults(run=_mc_maze)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as error:
        print(f"ner {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
