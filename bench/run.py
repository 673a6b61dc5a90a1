"""``make bench``: run every benchmark module and write one JSON per module under bench/results/.

Each module in ``MODULES`` defines ``run() -> dict`` (numbers with units in their keys). A benchmark that
needs ../shared/data records ``{"skipped": reason}`` when it is absent.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from pathlib import Path

import torch

MODULES = [
    "bench.bench_ratios",
    "bench.bench_prepare",
    "bench.bench_faces",
    "bench.bench_synthesis",
    "bench.bench_train",
    "bench.bench_clip",
    "bench.bench_scan",
    "bench.bench_serve",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "cpus": torch.get_num_threads(), "torch": torch.__version__}
    for name in MODULES:
        short = name.rsplit(".", 1)[-1]
        if args.only and short not in args.only:
            continue
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            print(f"[bench] {short}: not available ({exc})")
            continue
        t0 = time.time()
        result = mod.run()
        result = {"benchmark": short, "machine": machine, "wall_s": round(time.time() - t0, 2), **result}
        (out / f"{short}.json").write_text(json.dumps(result, indent=2))
        print(f"[bench] {short}: {json.dumps(result)[:400]}")


if __name__ == "__main__":
    main()
