"""Wall time of the README's main command on this machine.

    python bench/main_command.py            # about 5 minutes on 2 CPU cores

Runs `python tune/run_sweep.py --space baseline_1pct` (digits, the default seeded 24-trial
subset, 2 concurrent 1-CPU trials) into a temporary --storage exactly as a user would, and
writes bench/results/main_command.json: wall seconds (goal: under 600 on a 2-core CPU machine),
trials completed, the sum of the trials' own training seconds, the load average before and
after (the machine may be shared), and the best trial.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_result

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ["python", "tune/run_sweep.py", "--space", "baseline_1pct"]
GOAL_S = 600.0


def main() -> int:
    import pandas as pd

    env = {**os.environ}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory(prefix="s4l-main-") as tmp:
        env.setdefault("RAY_TMPDIR", os.path.join(tmp, "ray"))
        os.makedirs(env["RAY_TMPDIR"], exist_ok=True)
        storage = Path(tmp) / "runs"
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, *COMMAND[1:], "--storage", str(storage), "--name", "main"],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
            return 1
        df = pd.read_parquet(storage / "main" / "results.parquet")
        best = df.loc[df["val_full_top1"].idxmax()]
    figures = {
        "readme_command": " ".join(COMMAND),
        "wall_seconds": round(wall, 1),
        "goal_seconds": GOAL_S,
        "under_goal": wall < GOAL_S,
        "trials": int(len(df)),
        "completed": int((df["status"] == "completed").sum()),
        "sum_trial_train_seconds": round(float(df["train_seconds"].sum()), 1),
        "concurrency": 2,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "best": {
            "trial_id": str(best["trial_id"]),
            "val_full_top1": float(best["val_full_top1"]),
            "test_top1": float(best["test_top1"]),
            **{k: (best[k].item() if hasattr(best[k], "item") else best[k])
               for k in ("wd", "lr", "epochs", "arch", "width", "color_aug", "batch_size")},
        },
        "last_lines": proc.stdout.strip().splitlines()[-5:],
    }
    path = write_result("main_command", figures)
    print(f"main command: {wall:.0f}s wall ({figures['completed']}/{figures['trials']} trials "
          f"completed; goal < {GOAL_S:.0f}s) -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
