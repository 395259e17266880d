"""What produced a sweep: code, libraries, machine, command and times (space.json "provenance").

A result is only as good as one's ability to trace it back. `collect()` gathers, in the driver,
the project's version and git commit (dirty flag included, when run from a checkout), the
versions of Python and of the libraries a result depends on, the OS, the CPU model and count,
the GPU model, driver and CUDA version when a GPU is visible, the full command line, the Ray
cluster's node count and the session's start time; `finish()` adds the end time. Every
session of a sweep (the first run and each `--resume`) is one entry of `sessions`, since a
resumed sweep may run other code on another machine. Nothing here raises: a fact that cannot be
read is recorded as null.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

# The libraries whose versions can change a result or its reading.
LIBRARIES = ("s4l-tune", "torch", "torchvision", "ray", "optuna", "numpy", "pandas", "pyarrow",
             "scipy", "scikit-learn")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any] | None:
    """The checkout's commit and whether tracked files differ from it; None outside a checkout
    (an installed wheel) or without git."""
    if shutil.which("git") is None or not (root / ".git").exists():
        return None
    commit = _run(["git", "rev-parse", "HEAD"], root)
    if commit is None:
        return None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], root)
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def code_version(git: dict[str, Any] | None = None) -> str:
    """The s4l-tune version with its commit: `0.1.0+g1a2b3c4d5e`, `.dirty` when the checkout
    has uncommitted changes to tracked files (the results table's `code_version`)."""
    git = git_state() if git is None else git
    out = _version("s4l-tune") or "unknown"
    if git and git.get("commit"):
        out += f"+g{git['commit'][:10]}" + (".dirty" if git.get("dirty") else "")
    return out


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def gpu_facts() -> dict[str, Any] | None:
    """GPU model(s), driver and CUDA version when torch sees a GPU, else None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    driver = None
    if shutil.which("nvidia-smi"):
        out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        driver = out.splitlines()[0].strip() if out else None
    return {"models": names, "count": len(names), "driver": driver, "cuda": torch.version.cuda}


def ray_nodes() -> int | None:
    """Alive nodes of the connected Ray cluster (None when Ray is not initialised)."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        return sum(1 for n in ray.nodes() if n.get("Alive"))
    except Exception:
        return None


def command_line(argv: list[str] | None = None) -> str:
    """The command as it was typed (the interpreter and script as given)."""
    argv = list(sys.argv if argv is None else argv)
    return shlex.join([Path(sys.executable).name, *argv])


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def collect(argv: list[str] | None = None) -> dict[str, Any]:
    """One session's provenance, at its start (`finish()` adds the end)."""
    return {
        "id": uuid.uuid4().hex[:12],
        "started": now(),
        "finished": None,
        "command": command_line(argv),
        "cwd": os.getcwd(),
        "project": {"version": _version("s4l-tune"), "git": git_state()},
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "os": platform.platform(),
        "hostname": platform.node(),
        "pid": os.getpid(),  # with hostname: whether the driver still lives (s4l-report --watch)
        "cpu": {"model": cpu_model(), "count": os.cpu_count()},
        "gpu": gpu_facts(),
        "ray_nodes": ray_nodes(),
    }


def finish(session: dict[str, Any], outcome: str) -> dict[str, Any]:
    """The session with its end time and how it ended (finished | interrupted | failed)."""
    return {**session, "finished": now(), "outcome": outcome}


def _process_started(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), from Linux's /proc; None elsewhere
    or when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time, clock ticks
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def driver_state(session: dict[str, Any]) -> str:
    """Whether the driver of a session without a recorded end still runs: "gone" (its process
    no longer exists: killed with SIGKILL, or its machine lost power, which records no end),
    "alive" (its process exists and, where /proc tells, started no later than the session, so
    a reused pid is not taken for it) or "unknown" (another machine, a session written before
    the pid was recorded, or a process that may be another one under a reused pid)."""
    pid = session.get("pid")
    if not pid or session.get("hostname") != platform.node():
        return "unknown"
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass  # it exists (another user's)
    except (OverflowError, ValueError):
        return "unknown"  # the pid is not one
    started = _process_started(int(pid))
    try:
        session_start = datetime.datetime.strptime(
            session["started"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (KeyError, TypeError, ValueError, OverflowError):
        session_start = None
    if started is None or session_start is None:
        return "unknown"
    # the session is recorded after its process started (2 s: clock-tick and rounding slack)
    return "alive" if started <= session_start + 2 else "unknown"


def driver_gone(session: dict[str, Any]) -> bool:
    """Whether a session without a recorded end has lost its driver (`driver_state`)."""
    return driver_state(session) == "gone"


def describe(sessions: list[dict[str, Any]]) -> str:
    """One line per session for the report and the summary."""
    lines = []
    for s in sessions:
        git = (s.get("project") or {}).get("git") or {}
        code = (s.get("project") or {}).get("version") or "?"
        if git.get("commit"):
            code += f" (git {git['commit'][:10]}{', dirty' if git.get('dirty') else ''})"
        libs = s.get("libraries") or {}
        gpu = s.get("gpu") or {}
        where = f"{(s.get('cpu') or {}).get('count')} x {(s.get('cpu') or {}).get('model')}"
        if gpu:
            where += f"; {gpu.get('count')} x {', '.join(sorted(set(gpu.get('models') or [])))}" \
                     f" (driver {gpu.get('driver')}, CUDA {gpu.get('cuda')})"
        lines.append(
            f"{s.get('started')} to {s.get('finished') or 'running'}"
            + (f" ({s['outcome']})" if s.get("outcome") else "")
            + f": s4l-tune {code}, torch {libs.get('torch')}, ray {libs.get('ray')}, "
            f"Python {s.get('python')}, {s.get('os')}, {where}, "
            f"{s.get('ray_nodes') or '?'} Ray node(s); command: {s.get('command')}"
        )
    return "\n".join(lines)


__all__ = ["collect", "finish", "describe", "driver_gone", "driver_state", "code_version", "git_state", "gpu_facts", "LIBRARIES"]
