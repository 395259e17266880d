"""Calibrate tune/memory_plan.py: measured peak memory of trials against the estimate.

    python bench/memory_calibration.py           # about 18 minutes on 2 busy CPU cores
    python bench/memory_calibration.py --refit   # refit and rewrite the table from the last run

1. Each configuration of CONFIGS trains in a fresh Python process through
   `s4l_models.trainer.train` (one torch thread, 2 optimizer steps, one evaluation with the test
   split and a checkpoint: where a trial's peak is), which reports its peak RSS
   (`getrusage(RUSAGE_SELF).ru_maxrss`) and the size of the state.pt it wrote. Digits (8x8x1):
   ResNet-18/50 v1/v2 at widths 0.25-4, batches 64 and 256, supervised, S4L-Rotation and VAT;
   a few on synthetic 32x32x3 images for the input size.
2. The same process with everything imported and nothing trained gives the plain baseline; two
   configurations also run as real one-trial sweeps (`tune/run_sweep.py`), whose Ray worker's
   peak (`VmHWM` of the `ray::ImplicitFunc` process) gives what Ray and Tune add.
3. Fit: measured = baseline + s * state + max(a * train, e * eval) + data over the estimate's
   terms (`memory_plan.trial_memory_terms`), by least squares, and the margin that puts every
   run under the fit (the estimate multiplies the fit by a margin above it). The
   constants go into tune/memory_plan.py by hand; the table compares each run with the
   estimate as committed there.

Writes bench/results/memory_calibration.json and memory_calibration.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import RESULTS, processes_with, write_result  # noqa: E402

LABELED = 480  # labels 48/class on 10 classes
STEPS = 2
# (method, arch, width, batch, dataset)
CONFIGS = [
    *[("supervised", a, w, b, "digits")
      for a, w in (("resnet18_v1", 0.25), ("resnet18_v2", 0.25), ("resnet18_v1", 1.0),
                   ("resnet18_v2", 1.0), ("resnet50_v1", 0.5), ("resnet50_v2", 1.0),
                   ("resnet18_v2", 2.0), ("resnet50_v1", 2.0), ("resnet18_v2", 4.0))
      for b in (64, 256)],
    ("supervised", "resnet50_v2", 4.0, 64, "digits"),
    *[("s4l_rotation", a, w, b, "digits")
      for a, w, b in (("resnet18_v2", 0.5, 64), ("resnet18_v2", 0.5, 256),
                      ("resnet18_v1", 1.0, 64), ("resnet50_v2", 1.0, 64),
                      ("resnet18_v2", 2.0, 64))],
    *[("vat", a, w, b, "digits")
      for a, w, b in (("resnet18_v2", 0.5, 64), ("resnet18_v2", 0.5, 256),
                      ("resnet18_v1", 1.0, 64), ("resnet50_v2", 1.0, 64))],
    ("supervised", "resnet18_v2", 0.5, 64, "synthetic32"),
    ("supervised", "resnet18_v2", 0.5, 256, "synthetic32"),
    ("s4l_rotation", "resnet18_v2", 0.25, 64, "synthetic32"),
]
# Configurations that also run as one-trial sweeps (Ray's worker overhead).
RAY_CONFIGS = [("supervised", "resnet18_v2", 0.25, 64, "digits"),
               ("supervised", "resnet18_v2", 1.0, 256, "digits")]


def settings(method: str, arch: str, width: float, batch: int, dataset: str) -> dict:
    epochs = STEPS * batch / LABELED
    return {
        "method": method, "arch": arch, "width": width, "batch_size": batch, "dataset": dataset,
        "labels": "48/class", "epochs": epochs, "eval_every": epochs, "warmup_epochs": 0.0,
        "threads": 1, "device": "cpu", "seed": 0,
    }


# --- one measurement (runs in its own process) ------------------------------------------------
def measure_one(values: dict | None, out: str) -> dict:
    import resource

    import ray  # noqa: F401  (a sweep's worker has it imported)
    import torch  # noqa: F401

    from s4l_models.config import TrainConfig
    from s4l_models.run import train

    result: dict = {}
    if values is not None:
        cfg = TrainConfig.from_dict(values)
        t0 = time.perf_counter()
        metrics = train(cfg, out, log=lambda line: None)
        result = {
            "steps": metrics["steps"], "seconds": round(time.perf_counter() - t0, 2),
            "state_pt_bytes": (Path(out) / "checkpoint" / "state.pt").stat().st_size,
            "run_files_bytes": sum(
                f.stat().st_size for f in Path(out).rglob("*")
                if f.is_file() and "checkpoint" not in f.parts
            ),
        }
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result


def run_one(values: dict | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        p = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(values), tmp],
            capture_output=True, text=True, cwd=ROOT, timeout=900,
        )
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether process `pid` is `ancestor` or below it (other people's sweeps run here too)."""
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def sweep_worker_peak(config: tuple) -> dict:
    """Peak RSS (VmHWM) of the Ray worker of a one-trial sweep of `config`."""
    s = settings(*config)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            sys.executable, str(ROOT / "tune" / "run_sweep.py"), "--space", "baseline_10pct",
            "--max-trials", "1", "--labels", s["labels"], "--concurrency", "1", "--no-report",
            "--quiet", "--storage", tmp, "--name", "m",
        ]
        for key in ("method", "arch", "width", "batch_size", "epochs", "eval_every",
                    "warmup_epochs"):
            args += ["--set", f"{key}={s[key]}"]
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        peaks: dict[int, int] = {}
        while proc.poll() is None:
            for pid in processes_with("ray::ImplicitFunc"):
                if not descends_from(pid, proc.pid):
                    continue
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        peaks[pid] = max(peaks.get(pid, 0), int(line.split()[1]) * 1024)
            time.sleep(0.1)
        out = proc.stdout.read()
        if proc.returncode != 0 or not peaks:
            raise RuntimeError(f"sweep failed ({proc.returncode}): {out[-2000:]}")
    return {"worker_peak_bytes": max(peaks.values()), "workers": len(peaks)}


# --- the fit ------------------------------------------------------------------------------------
def terms_of(row: dict) -> dict:
    from tune.memory_plan import trial_memory_terms

    return trial_memory_terms(settings(*row["config"]))


def fit(rows: list[dict]) -> dict:
    """measured = baseline + s * state + max(a * train, e * eval) + data, least squares (in MiB,
    non-negative), and the margin that puts every run under the fit."""
    import numpy as np
    from scipy.optimize import least_squares

    t = [terms_of(r) for r in rows]
    T = np.array([[x["state"], x["train"], x["eval"], x["data"]] for x in t], float)
    y = np.array([r["peak_rss_bytes"] for r in rows], float)

    def model(p):
        c, s, a, e = p
        return c + s * T[:, 0] + np.maximum(a * T[:, 1], e * T[:, 2]) + T[:, 3]

    mib = 2.0**20
    res = least_squares(lambda p: (model(p) - y) / mib, [900 * mib, 1.0, 1.0, 1.0],
                        bounds=([0, 0, 0, 0], [np.inf] * 4))
    c, s, a, e = res.x
    ratio = y / model(res.x)
    return {
        "baseline_bytes": float(c), "state_factor": float(s), "activation_factor": float(a),
        "eval_factor": float(e), "margin_needed": float(ratio.max()),
        "rms_residual_bytes": float(np.sqrt(np.mean((y - model(res.x)) ** 2))),
    }


def table(rows: list[dict]) -> tuple[list[dict], str]:
    from tune.memory_plan import MIB, checkpoint_bytes, trial_memory_bytes

    out, lines = [], [
        ("| method | arch | width | batch | dataset | measured MiB | estimate MiB | estimate / "
         "measured | state.pt MiB | checkpoint estimate MiB |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = settings(*r["config"])
        est, ck = trial_memory_bytes(s), checkpoint_bytes(s)
        ratio = est / r["peak_rss_bytes"]
        out.append({**r, "estimate_bytes": est, "ratio": round(ratio, 3),
                    "checkpoint_estimate_bytes": ck})
        m, a, w, b, d = r["config"]
        lines.append(
            f"| {m} | {a} | {w:g} | {b} | {d} | {r['peak_rss_bytes'] / MIB:,.0f} | "
            f"{est / MIB:,.0f} | {ratio:.2f} | {r['state_pt_bytes'] / MIB:,.1f} | {ck / MIB:,.1f} |"
        )
    return out, "\n".join(lines)


def report(doc: dict) -> None:
    from tune.memory_plan import MARGIN, WORKER_BASELINE_BYTES

    rows, md = table(doc["runs"])
    ratios = sorted(r["ratio"] for r in rows)
    ck = [r["checkpoint_estimate_bytes"] / r["state_pt_bytes"] for r in rows]
    summary = {
        "estimate_over_measured": {"min": ratios[0], "median": ratios[len(ratios) // 2],
                                   "max": ratios[-1]},
        "checkpoint_estimate_over_state_pt": {"min": round(min(ck), 3), "max": round(max(ck), 3)},
        "committed": {"worker_baseline_bytes": WORKER_BASELINE_BYTES, "margin": MARGIN},
    }
    doc = {**doc, "runs": rows, "summary": summary}
    path = write_result("memory_calibration", doc)
    head = (
        f"# Memory calibration\n\n`python bench/memory_calibration.py` "
        f"({time.strftime('%Y-%m-%d')}); the fit "
        f"and the estimate's terms are described in tune/memory_plan.py.\n\n"
        f"Plain process baseline (imports, no training): {doc['plain_baseline_bytes'] / 2**20:,.0f} "
        f"MiB; Ray Tune worker over the same configuration run plainly: "
        f"+{doc['ray_overhead_bytes'] / 2**20:,.0f} MiB. Fit: baseline {doc['fit']['baseline_bytes'] / 2**20:,.0f} MiB, state "
        f"x{doc['fit']['state_factor']:.2f}, training activations "
        f"x{doc['fit']['activation_factor']:.2f}, evaluation activations "
        f"x{doc['fit']['eval_factor']:.2f}; every run is under the fit times "
        f"{doc['fit']['margin_needed']:.3f} (committed margin {MARGIN}). Estimate / measured: min "
        f"{ratios[0]:.2f}, median {ratios[len(ratios) // 2]:.2f}, max {ratios[-1]:.2f}.\n\n"
    )
    (RESULTS / "memory_calibration.md").write_text(head + md + "\n")
    print(md)
    print(json.dumps(summary, indent=2))
    print(f"wrote {path}")


def ray_overhead(ray_runs: list[dict]) -> int:
    """What a Ray Tune worker adds over the plain process (none when it needs less: the worker
    gets the dataset from the driver and skips the loader's imports)."""
    return max(0, max(r["worker_peak_bytes"] - r["plain_peak_bytes"] for r in ray_runs))


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if argv and argv[0] not in ("--one", "--refit"):
        print(f"error: unknown argument {argv[0]!r}; see --help", file=sys.stderr)
        return 2
    if argv[:1] == ["--one"]:
        values = json.loads(argv[1])
        print(json.dumps(measure_one(values, argv[2])))
        return 0
    if argv[:1] == ["--refit"]:
        doc = json.loads((RESULTS / "memory_calibration.json").read_text())
        doc["ray_overhead_bytes"] = ray_overhead(doc["ray_runs"])
        doc.setdefault("measured_by", "python bench/memory_calibration.py")
        for r in doc["runs"]:
            r["config"] = tuple(r["config"])
            r["peak_rss_bytes"] = r["plain_peak_bytes"] + doc["ray_overhead_bytes"]
        doc["fit"] = fit(doc["runs"])
        print(json.dumps(doc["fit"]))
        report({k: v for k, v in doc.items() if k not in ("name", "command", "machine",
                                                           "summary")})
        return 0
    t0 = time.time()
    plain = max(run_one(None)["peak_rss_bytes"] for _ in range(2))
    print(f"plain baseline {plain / 2**20:.0f} MiB", flush=True)
    rows = []
    for config in CONFIGS:
        r = {"config": config, **run_one(settings(*config))}
        rows.append(r)
        print(f"{config}: {r['peak_rss_bytes'] / 2**20:,.0f} MiB, {r['steps']} steps, "
              f"{r['seconds']} s", flush=True)
    ray_runs = []
    for config in RAY_CONFIGS:
        worker = sweep_worker_peak(config)
        same = next(r for r in rows if r["config"] == config)
        ray_runs.append({"config": config, **worker, "plain_peak_bytes": same["peak_rss_bytes"]})
        print(f"ray worker {config}: {worker['worker_peak_bytes'] / 2**20:,.0f} MiB", flush=True)
    overhead = ray_overhead(ray_runs)
    # the runs as they would be in a Ray worker: plain peak + what Ray adds
    for r in rows:
        r["plain_peak_bytes"] = r["peak_rss_bytes"]
        r["peak_rss_bytes"] = r["plain_peak_bytes"] + overhead
    doc = {
        "what": "peak RSS of trials (2 optimizer steps, one evaluation and checkpoint, 1 torch "
                "thread) in a fresh process, plus the Ray Tune worker's overhead measured on "
                "one-trial sweeps, against tune/memory_plan.py's estimate",
        "measured_by": "python bench/memory_calibration.py",
        "plain_baseline_bytes": plain,
        "ray_overhead_bytes": overhead,
        "ray_runs": ray_runs,
        "runs": rows,
        "seconds": round(time.time() - t0, 1),
    }
    doc["fit"] = fit(rows)
    print(json.dumps(doc["fit"]), flush=True)
    report(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
