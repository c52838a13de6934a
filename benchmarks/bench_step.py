"""Training step time: NER vs stock CEBRA on a real session, side by side in one run.

Both use the paper's model (offset1-model, 3-D output), batch 512, learning rate 1e-4,
time_delta positives with time offset 1. A step is one loader draw plus one solver step
(forward, loss, backward, Adam). Steps of the two methods are interleaved in blocks so
that both see the same machine state.

    NER_DATA_DIR=../shared/data python benchmarks/bench_step.py [--session Chewie_20161007] [--device cpu]

On a CUDA device (the default where there is one) each step is timed to its end (synchronised).
"""

import argparse
import json
import platform
import resource
import statistics
import time

import cebra
import torch

from ner import NER
from ner.data import load_session
from ner.methods.cebra_baseline import SeededCEBRA

SHARED = dict(model_architecture="offset1-model", batch_size=512, learning_rate=1e-4,
              output_dimension=3, time_offsets=1, temperature=1.0, verbose=False)
STOCK = "CEBRA (dense search, 3 label columns)"


def estimators(device):
    return {
        STOCK: cebra.CEBRA(conditional="time_delta", device=device, **SHARED),
        "CEBRA (seeded KD-tree search, 3 label columns: our cebra3d)": SeededCEBRA(
            conditional="time_delta", seed=0, device=device, **SHARED),
        "NER (KD-tree search)": NER(seed=0, device=device, **SHARED),
        "NER (CEBRA's dense search)": NER(seed=0, exact_search=False, device=device, **SHARED),
    }


def prepared(estimator, neural, labels, steps):
    estimator.set_params(max_iterations=steps)
    solver, _, loader, _ = estimator._prepare_fit(neural, labels)
    solver.to(loader.device)
    solver.model.train()
    return solver, iter(loader)


def time_steps(solver, batches, n, synchronize):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        solver.step(next(batches))
        synchronize()
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--session", default="Chewie_20161007")
    parser.add_argument("--area", default="M1")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--steps-per-block", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)

    train = load_session(args.session, area=args.area).train
    total = args.blocks * args.steps_per_block + 20
    runs = {name: prepared(est, train.neural, train.labels, total)
            for name, est in estimators(args.device).items()}
    for solver, batches in runs.values():  # warm-up
        time_steps(solver, batches, 20, synchronize)
    times = {name: [] for name in runs}
    for _ in range(args.blocks):
        for name, (solver, batches) in runs.items():
            times[name] += time_steps(solver, batches, args.steps_per_block, synchronize)

    base = statistics.median(times[STOCK])
    result = {
        "machine": f"{platform.processor() or platform.machine()}, "
                   f"{torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "session": f"{args.session} {args.area} train split, {len(train.neural)} bins",
        "median_ms": {name: 1000 * statistics.median(t) for name, t in times.items()},
        "ratio_to_cebra": {name: statistics.median(t) / base for name, t in times.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
