"""The report while a sweep runs: `<sweep>/report/index.html` rebuilt as trials finish.

The rebuild runs `s4l-report` in a child process (the analysis imports matplotlib and takes
seconds; Ray's loop on the driver must not wait for it), at a pace set by its cost like the
results table's: after a build that took d seconds the next one starts no sooner than
max(`MIN_WAIT_S`, `COST_FACTOR` x d) later, and only when more trials have finished since. So
the report costs the driver's machine at most 1/`COST_FACTOR` of one core. The live page
reloads itself every `REFRESH_S` seconds; the final report, built when the sweep ends, does not.
Nothing here can fail the sweep: a build that fails is retried at the next pace.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

MIN_WAIT_S = 60.0
COST_FACTOR = 20.0
REFRESH_S = 60


def report_command(sweep_dir: Path, refresh_s: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "analysis.cli", str(sweep_dir), "--out",
           str(Path(sweep_dir) / "report"), "--quiet"]
    if refresh_s:
        cmd += ["--refresh", str(int(refresh_s))]
    return cmd


class LiveReport:
    def __init__(self, sweep_dir: str | Path, min_wait_s: float = MIN_WAIT_S,
                 cost_factor: float = COST_FACTOR, refresh_s: int = REFRESH_S,
                 on_built=None):
        """`on_built`: called after each successful build (a sweep on an object store uploads
        the report)."""
        self.sweep_dir = Path(sweep_dir)
        self.on_built = on_built
        self.min_wait_s = min_wait_s
        self.cost_factor = cost_factor
        self.refresh_s = refresh_s
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.wait_s = 0.0  # after the last build, before the next may start
        self.last_end = -float("inf")
        self.built_for = 0  # finished trials the last build saw
        self.builds = 0

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            took = time.monotonic() - self.started_at
            self.wait_s = max(self.min_wait_s, self.cost_factor * took)
            self.last_end = time.monotonic()
            ok = self.proc.returncode == 0
            self.proc = None
            if ok:
                self.builds += 1
                if self.on_built is not None:
                    try:
                        self.on_built()
                    except OSError:
                        pass  # the store is unreachable now: the next build uploads again

    def maybe_start(self, n_finished: int) -> bool:
        """Start a rebuild if one is due: none running, the pace's wait is over, and more than
        `built_for` trials have finished (the report needs a completed one). True if started."""
        self._reap()
        if self.proc is not None or n_finished <= self.built_for:
            return False
        if time.monotonic() - self.last_end < self.wait_s:
            return False
        try:
            self.proc = subprocess.Popen(
                report_command(self.sweep_dir, self.refresh_s), stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
        except OSError:
            return False
        self.started_at = time.monotonic()
        self.built_for = n_finished
        return True

    def stop(self) -> None:
        """Before the final report: end a rebuild still running (it would overwrite it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reap()


__all__ = ["LiveReport", "report_command", "MIN_WAIT_S", "COST_FACTOR", "REFRESH_S"]
