"""Rank loss forward+backward: ner's vectorised loss vs a loop over columns.

The loop is the original implementation's algorithm (one masked log-sum-exp per
column j, O(n^3) time and memory for the backward pass). Each measurement runs
in a fresh process so that its peak memory can be read from the OS.

    python benchmarks/bench_loss.py [--loop-up-to 256] [--repeats 20]
"""

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[64, 128, 256, 512])
    parser.add_argument("--loop-up-to", type=int, default=256,
                        help="largest batch for the loop (512 takes minutes)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
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
            out = subprocess.run([sys.executable, __file__, "--one", method, str(batch_size),
                                  "--repeats", str(args.repeats)],
                                 check=True, capture_output=True, text=True).stdout
            row[method] = json.loads(out)
        if "loop" in row:
            row["speedup"] = row["loop"]["median_ms"] / row["ner"]["median_ms"]
        rows.append(row)
    print(json.dumps({"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                                 f"torch {torch.__version__}",
                      "results": rows}, indent=2))


if __name__ == "__main__":
    main()
