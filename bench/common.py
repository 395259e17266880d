"""Shared bits of the benchmarks: machine/version facts and writing bench/results/<name>.json."""

from __future__ import annotations

import argparse
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


def repo_path(path) -> str:
    """A path as recorded in a committed result: relative to the repository when inside it."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(RESULTS.parent.parent))
    except ValueError:
        return str(p)


def sweep_dirs(argv: list[str], doc: str, defaults: list[str]) -> list[Path]:
    """The sweep directories a benchmark reads: its arguments, else `defaults` (repository
    paths). `--help` prints `doc`; a directory without a results table is an error (exit 2)."""
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweeps", nargs="*", metavar="SWEEP_DIR",
                   help=f"sweep directories (default: {' '.join(defaults)})")
    args = p.parse_args(argv)
    root = RESULTS.parent.parent
    dirs = [Path(d) for d in args.sweeps] or [root / d for d in defaults]
    for d in dirs:
        if not (d / "results.parquet").is_file():
            p.error(f"{d} is not a sweep directory (it holds no results.parquet)")
    return dirs


def merged_rows(name: str, rows: list[dict], key: str = "sweep") -> list[dict]:
    """`rows` (this run's, one per sweep) followed by the rows of bench/results/<name>.json for
    the sweeps this run did not measure: a run on some sweeps never drops the others' figures."""
    path = RESULTS / f"{name}.json"
    try:
        earlier = json.loads(path.read_text()).get("sweeps") or []
    except (OSError, ValueError):
        earlier = []
    done = {repo_path(r[key]) for r in rows}
    return rows + [r for r in earlier if repo_path(r[key]) not in done]

