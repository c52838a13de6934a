"""Wall time of one paper-length NER fit (20000 iterations, batch 512) on a real session, and what the
committed caches say the retraining cost.

    NER_DATA_DIR=../shared/data python benchmarks/bench_fit.py [--iterations 20000] [--device cpu]
    python benchmarks/bench_fit.py --caches data_NER      # sums the caches' recorded wall times only

The caches' ``wall_time_s`` (fit plus embedding of both splits, per unit) are summed per method and
iteration count: the retraining's compute, whatever the number of parallel workers. A fit resumed after a
kill recorded only its last process's time: it is named, not timed.
"""

import argparse
import json
import platform
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from ner import NER
from ner.data import load_session
from ner.workflow.store import read_npz


def one_fit(session, area, iterations, device):
    train = load_session(session, area=area).train
    start = time.perf_counter()
    model = NER(seed=0, max_iterations=iterations, device=device, verbose=False).fit(train.neural, train.labels)
    model.transform(train.neural)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"unit": f"{session} {area}", "iterations": iterations, "wall_s": round(time.perf_counter() - start, 1),
            "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
            "torch_threads": torch.get_num_threads()}


def recorded(caches: Path):
    times, resumed = defaultdict(list), defaultdict(list)
    for path in sorted((caches / "embeddings").glob("*/seed*/*.npz")):
        provenance = read_npz(path)["provenance"]
        key = f"{provenance['method']} @ {provenance['iterations']} it"
        if provenance.get("resumed_from_step"):  # its first steps ran in a killed process, which recorded no time
            resumed[key].append(path.stem)
        else:
            times[key].append(provenance["wall_time_s"])
    summary = {}
    for key in sorted({*times, *resumed}):
        values = times[key]
        summary[key] = {"units": len(values) + len(resumed[key]), "timed_units": len(values),
                        **({"wall_s": round(sum(values)), "wall_h": round(sum(values) / 3600, 2),
                            "median_s": round(statistics.median(values)),
                            "range_s": [round(min(values)), round(max(values))]} if values else {}),
                        **({"resumed_not_timed": resumed[key]} if resumed[key] else {})}
    return summary


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--session", default="Chewie_20161007")
    parser.add_argument("--area", default="M1")
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--caches", type=Path, help="only sum the recorded wall times of this cache folder")
    args = parser.parse_args()
    result = {"machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}"}
    if args.caches:
        result["recorded"] = recorded(args.caches)
    else:
        result["fit"] = one_fit(args.session, args.area, args.iterations, args.device)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
