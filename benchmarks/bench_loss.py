"""Rank loss forward+backward: ner's vectorised loss vs a loop over columns, and
beside CEBRA's InfoNCE.

The loop is the original implementation's algorithm (one masked log-sum-exp per
column j, O(n^3) time and memory for the backward pass). Each of those
measurements runs in a fresh process so that its peak memory can be read from
the OS.

The InfoNCE baseline is what CEBRA's cebra3d trains with: FixedCosineInfoNCE on
normalised (batch, 3) reference, positive and negative embeddings. It is timed
in one process with ner's loss, their repeats interleaved, so that both see the
same machine load; the ratio of the medians is reported per batch size.

    python benchmarks/bench_loss.py [--loop-up-to 256] [--repeats 20] [--threads N]
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from cebra.models.criterions import FixedCosineInfoNCE

from ner.model.loss import LabelDistance, RankLoss


def loop_loss(ref, pos, labels, temperature=1.0):
    """Column by column, as the original: O(n^3) time, and autograd keeps every mask."""
    features = torch.cat([ref, pos])
    all_labels = torch.cat([labels, labels])
    n = len(features)
    distance = LabelDistance()(all_labels, all_labels)
    similarity = -torch.cdist(features, features) / temperature
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    total = 0.0
    for j in range(n):
        mask = (distance >= distance[:, j:j + 1]) & off_diagonal
        log_denominator = torch.logsumexp(similarity.masked_fill(~mask, -torch.inf), dim=1)
        terms = (similarity[:, j] - log_denominator)[off_diagonal[:, j]]
        total = total + terms.sum()
    return -total / (n * (n - 1))


def batch(batch_size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ref = torch.randn(batch_size, 3, generator=generator, requires_grad=True)
    pos = torch.randn(batch_size, 3, generator=generator, requires_grad=True)
    # Paper-like labels: continuous velocities, 8 discrete angles (many ties).
    labels = torch.cat([3 * torch.randn(batch_size, 2, generator=generator),
                        45.0 * torch.randint(0, 8, (batch_size, 1), generator=generator)], 1)
    return ref, pos, labels


def infonce_batch(batch_size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.functional.normalize(torch.randn(batch_size, 3, generator=generator), dim=1)
            .requires_grad_() for _ in range(3)]


def measure(method, batch_size, repeats):
    loss = RankLoss() if method == "ner" else loop_loss
    ref, pos, labels = batch(batch_size)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss(ref, pos, labels).backward()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss(ref, pos, labels).backward()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"median_ms": 1000 * statistics.median(times),
            "extra_peak_mb": (peak - baseline) / 1024}


def side_by_side(batch_size, repeats):
    """ner's and InfoNCE's forward+backward, alternated step by step."""
    ref, pos, labels = batch(batch_size)
    rank = RankLoss()
    infonce = FixedCosineInfoNCE(temperature=1.0)
    reference, positive, negative = infonce_batch(batch_size)
    steps = {"ner": lambda: rank(ref, pos, labels).backward(),
             "infonce": lambda: infonce(reference, positive, negative)[0].backward()}
    times = {name: [] for name in steps}
    for step in steps.values():
        step()  # warm-up
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(1000 * (time.perf_counter() - start))
    row = {}
    for name, values in times.items():
        row[f"{name}_median_ms"] = statistics.median(values)
        row[f"{name}_min_ms"] = min(values)
    row["ratio"] = row["ner_median_ms"] / row["infonce_median_ms"]
    row["ratio_of_minima"] = row["ner_min_ms"] / row["infonce_min_ms"]
    return row


def machine():
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[64, 128, 256, 512])
    parser.add_argument("--loop-up-to", type=int, default=256,
                        help="largest batch for the loop (512 takes minutes)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--side-by-side-repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        method, batch_size = args.one[0], int(args.one[1])
        repeats = args.repeats if method == "ner" else max(1, min(3, args.repeats))
        print(json.dumps(measure(method, batch_size, repeats)))
        return

    rows = []
    for batch_size in args.batch_sizes:
        row = {"batch_size": batch_size}
        for method in ("ner", "loop"):
            if method == "loop" and batch_size > args.loop_up_to:
                continue
            command = [sys.executable, __file__, "--one", method, str(batch_size),
                       "--repeats", str(args.repeats)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            row[method] = json.loads(out)
        if "loop" in row:
            row["speedup"] = row["loop"]["median_ms"] / row["ner"]["median_ms"]
        row["vs_infonce"] = side_by_side(batch_size, args.side_by_side_repeats)
        rows.append(row)
    print(json.dumps({"machine": machine(), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
