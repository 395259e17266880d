"""The report while a sweep runs: the sweep's child-process rebuilds (tune/live_report.py) and
`s4l-report --watch` (analysis/cli.py): live pages reload themselves, the final one does not."""

from __future__ import annotations

import json
import time

import pytest
from planted_sweeps import planted_sweep

from analysis import cli
from tune import provenance
from tune.live_report import LiveReport

RELOAD = "http-equiv='refresh'"


@pytest.fixture()
def sweep_dir(tmp_path):
    grid = {"wd": [1e-4, 1e-2], "epochs": [30, 300]}
    return planted_sweep(tmp_path / "s", grid=grid, per_class=10, errored=0)


def _mark_running(d, running: bool):
    space = json.loads((d / "space.json").read_text())
    s = provenance.collect(["tune/run_sweep.py"])
    space["provenance"] = {"sessions": [s if running else provenance.finish(s, "finished")]}
    (d / "space.json").write_text(json.dumps(space))


def _wait(live: LiveReport, timeout=120.0):
    t0 = time.monotonic()
    while live.proc is not None and live.proc.poll() is None:
        assert time.monotonic() - t0 < timeout
        time.sleep(0.2)
    live._reap()


def test_live_rebuilds_are_paced_and_reload_themselves(sweep_dir):
    live = LiveReport(sweep_dir, min_wait_s=3600, refresh_s=7)
    assert live.maybe_start(4)
    assert not live.maybe_start(5)  # one build at a time
    _wait(live)
    assert live.builds == 1
    page = (sweep_dir / "report" / "index.html").read_text()
    assert f"{RELOAD} content='7'" in page and "Live report of a running sweep" in page
    assert not live.maybe_start(5)  # the pace's wait (here an hour) is not over
    live.last_end -= 7200
    assert not live.maybe_start(4)  # nothing new finished since the last build
    assert live.maybe_start(5)
    live.stop()  # a rebuild in flight is ended (the final report must not be overwritten)
    assert live.proc is None


def test_the_pace_follows_the_build_cost(sweep_dir):
    live = LiveReport(sweep_dir, min_wait_s=0.0, cost_factor=20.0)
    assert live.maybe_start(1)
    t0 = time.monotonic()
    _wait(live)
    took = time.monotonic() - t0
    assert live.wait_s >= 20 * took * 0.9 and live.wait_s > 0


def test_watch_builds_live_pages_until_the_sweep_ends_then_a_final_one(sweep_dir, monkeypatch):
    _mark_running(sweep_dir, True)
    pages = []

    def sleep(_):
        pages.append((sweep_dir / "report" / "index.html").read_text())
        _mark_running(sweep_dir, False)  # the sweep ends while we wait

    monkeypatch.setattr(cli, "_pause", sleep)
    assert cli.main([str(sweep_dir), "--watch", "--every", "5", "--quiet"]) == 0
    assert len(pages) == 1 and f"{RELOAD} content='5'" in pages[0]
    final = (sweep_dir / "report" / "index.html").read_text()
    assert RELOAD not in final and "Live report" not in final


def test_running_reads_the_last_session(sweep_dir):
    _mark_running(sweep_dir, True)
    assert cli.running(sweep_dir)
    _mark_running(sweep_dir, False)
    assert not cli.running(sweep_dir)


def test_a_sweep_whose_driver_was_killed_is_not_watched_forever(sweep_dir, monkeypatch):
    """A driver killed with SIGKILL records no end in space.json: --watch waited for it for
    ever, and the page kept its 'Live report of a running sweep' banner. On the driver's
    machine its process id tells."""
    import subprocess
    import sys

    _mark_running(sweep_dir, True)
    space = json.loads((sweep_dir / "space.json").read_text())
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    space["provenance"]["sessions"][-1]["pid"] = driver.pid
    (sweep_dir / "space.json").write_text(json.dumps(space))
    assert cli.running(sweep_dir)  # the driver lives
    driver.kill()
    driver.wait()
    assert not cli.running(sweep_dir)
    monkeypatch.setattr(cli, "_pause", lambda _: pytest.fail("no waiting for a dead driver"))
    assert cli.main([str(sweep_dir), "--watch", "--quiet"]) == 0
    assert "Live report" not in (sweep_dir / "report" / "index.html").read_text()
    # another machine's driver cannot be asked: still running, as before
    space["provenance"]["sessions"][-1]["hostname"] = "another-host"
    (sweep_dir / "space.json").write_text(json.dumps(space))
    assert cli.running(sweep_dir)


def test_a_finished_sweep_is_built_once_without_reload(sweep_dir, monkeypatch):
    _mark_running(sweep_dir, False)
    monkeypatch.setattr(cli, "_pause", lambda _: pytest.fail("no waiting for a finished sweep"))
    assert cli.main([str(sweep_dir), "--watch", "--quiet"]) == 0
    assert RELOAD not in (sweep_dir / "report" / "index.html").read_text()
