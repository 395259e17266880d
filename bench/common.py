"""Shared bits of the benchmarks: machine/version facts and writing bench/results/<name>.json."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def command_line() -> str:
    """This benchmark's command as run from the repository root (python bench/NAME.py ARGS),
    wherever it was started from, so the recorded command can be pasted as it is."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(RESULTS.parent.parent)
    except ValueError:
        pass
    return "python " + " ".join(shlex.quote(a) for a in [str(script), *sys.argv[1:]])
# Settings a benchmark's trainer config needs for a dataset: ImageNet-shaped synthetic data has
# 1,000 classes and a 1,000-image validation split, one image per class, so only the
# 1-per-class tiny subset exists.
DATASET_SETTINGS = {"synthetic224": {"tiny_k": [1]}}


def machine() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import ray

        info["ray"] = ray.__version__
    except ImportError:
        pass
    return info


def sync(device) -> None:
    """Wait for the GPU's queued work (so that a timed region ends when its work does)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def processes_with(*needles: str) -> dict[int, str]:
    """pid -> command line of this machine's processes whose command line holds every needle."""
    found = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmd for n in needles):
            found[int(p.name)] = cmd
    return found


def mean_std(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def write_result(name: str, figures: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": command_line(),
        "machine": machine(),
        **figures,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
