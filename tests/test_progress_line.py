"""The sweep's progress line (tune/progress_line.py): its ETA, its width, terminal vs log.

No Ray and no sleeping: the callback is driven with fake trials (trial_id, status, last_result,
config) and a fake clock, in a simulated sweep whose trials really take a different time than
the cost model says (as on a real machine, where the model of sweep_plan.trial_cost was 1.5x
too pessimistic for the main command).
"""

from __future__ import annotations

import random
import re
from types import SimpleNamespace

import pytest

from tune.progress_line import fit_line, schedule_span
from tune.sweep_callback import SweepCallback
from tune.sweep_plan import make_plan
from tune.trainable import encode_value


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def trial(trial_id: str, config: dict, status: str = "PENDING") -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, status=status, last_result={}, config=config,
                           experiment_tag=trial_id.rsplit("_", 1)[-1], local_path="/nowhere",
                           path=None)  # a Ray trial has both (sweep_callback.error_file)


def callback(tmp_path, plan, clock, concurrency=2, planned=True, **kw) -> SweepCallback:
    ordered = sorted(plan.points, key=plan.cost, reverse=True)  # build_search's order
    setup = {"trials_dir": str(tmp_path / "trials"), "runtime": {},
             "fixed": {**plan.space.fixed, "dataset": plan.dataset, "data_dir": None}}
    cb = SweepCallback(
        str(tmp_path), setup, "val_full_top1", plan.axes, len(ordered), plan.sizes,
        table_every_s=1e9, concurrency=concurrency,
        planned_costs=[plan.cost(p) for p in ordered] if planned else None, **kw,
    )
    cb.progress.clock = clock
    cb.progress._t0 = clock()
    cb.table._last_table = 1e18  # no results table in these tests (time.monotonic is real)
    return cb, ordered


@pytest.fixture(scope="module")
def plan():
    return make_plan("baseline_1pct")  # the README's main command: 24 trials


def simulate(tmp_path, plan, *, ratio, noise, slots=2, startup=2.5, worker_start=15.0, seed=0,
             planned=True, concurrency=2, slowdown=None, end=3.0):
    """Run the plan's trials on `slots` simulated workers in Ray's order (FIFO, a trial created
    when a slot frees), each taking ratio * its model cost * a random factor in 1 +- noise
    (`startup` seconds of it before its first step; a worker's first trial also waits
    `worker_start` seconds for the worker), reporting step and train_seconds at every 10% of
    its steps, and ending `end` seconds after its last report. `slowdown(t)`: how many times slower the machine runs at second t (other jobs).
    The callback sees the events as Ray would send them. Returns [(time, eta, measured, line)]
    every simulated second and the time the last trial ended."""
    rng = random.Random(seed)
    clock = Clock()
    cb, ordered = callback(tmp_path, plan, clock, concurrency=concurrency, planned=planned)
    trials: list = []
    queue = list(enumerate(ordered))
    running: dict[str, dict] = {}
    workers_started = 0
    samples = []
    t0 = clock.t
    cb.on_step_begin(0, trials)
    while queue or running:
        # start trials on free slots (Ray creates a trial when the search lets it)
        while queue and len(running) < slots:
            i, point = queue.pop(0)
            t = trial(f"abc_{i:05d}", {k: encode_value(v) for k, v in point.items()})
            trials.append(t)
            work = ratio * plan.cost(point) * (1 + rng.uniform(-noise, noise)) - startup
            wait = startup + (worker_start if workers_started < slots else 0.0)
            workers_started += 1
            cb.on_trial_start(0, trials, t)
            t.status = "RUNNING"
            running[t.trial_id] = dict(trial=t, wait=wait, work=work, done=0.0, reports=0,
                                       train=0.0, end=end)
        clock.t += 1.0
        factor = slowdown(clock.t - t0) if slowdown else 1.0
        for tid, r in list(running.items()):
            if r["wait"] > 0:
                r["wait"] -= 1.0
                continue
            r["done"] += 1.0 / factor
            r["train"] += 1.0
            while r["reports"] < 10 and r["done"] >= r["work"] * (r["reports"] + 1) / 10:
                r["reports"] += 1
                t = r["trial"]
                t.last_result = {"step": 20 * r["reports"], "total_steps": 200,
                                 "train_seconds": r["train"],
                                 "val_full_top1": 0.5 + 0.01 * int(tid[-2:]) + 0.02 * r["reports"]}
                cb.on_trial_result(0, trials, t, t.last_result)
            if r["reports"] == 10 and r["end"] > 0:
                r["end"] -= 1.0
            elif r["reports"] == 10:
                del running[tid]
                cb.on_trial_complete(0, trials, r["trial"])
                r["trial"].status = "TERMINATED"
        cb.on_step_end(0, trials)
        eta, measured = cb.progress.eta() if (queue or running) else (0.0, True)
        samples.append((clock.t - t0, eta, measured, cb.progress.line(width=120)))
    return samples, clock.t - t0


def errors_after(samples, end, share=0.2, tail=0.05):
    """|ETA - truth| / truth of the samples after `share` of the sweep and before its last
    `tail` (in the last seconds a trial a second off its estimate is a large share of what is
    left; bench/main_command.py reports the same window)."""
    return [abs(eta - (end - t)) / (end - t) for t, eta, _, _ in samples
            if share * end <= t <= (1 - tail) * end]


# --- the ETA ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.62, 1.0, 1.8])  # the model too slow, right, too fast
def test_eta_is_within_30_percent_after_a_fifth_of_the_sweep(tmp_path, plan, ratio):
    # trials off the model by +-15% each: the measured speed corrects the model's scale, the
    # ordering and the slots give the tail (the last trials on one slot while the other idles)
    samples, end = simulate(tmp_path, plan, ratio=ratio, noise=0.15)
    errors = errors_after(samples, end)
    assert errors and max(errors) < 0.30, (max(errors), end)
    # shown from the start, never "?": the model's estimate, marked "~", until a measurement
    assert all("ETA ?" not in line for _, _, _, line in samples)
    first_measured = min(t for t, _, measured, _ in samples if measured)
    assert first_measured < 60
    assert all("ETA ~" in line for t, _, _, line in samples if t < first_measured)
    assert all("ETA ~" not in line for t, _, _, line in samples if t >= first_measured)


def test_before_any_trial_runs_the_eta_is_the_cost_models_prior(tmp_path, plan):
    clock = Clock()
    cb, ordered = callback(tmp_path, plan, clock, concurrency=2)
    eta, measured = cb.progress.eta()
    assert not measured
    # the model's own seconds, the 24 trials on 2 slots (longest first): at least half the sum
    total = sum(plan.cost(p) for p in ordered)
    assert total / 2 <= eta <= total / 2 + max(plan.cost(p) for p in ordered)
    assert re.search(r"ETA ~\d+m\d\ds", cb.progress.line(width=120))
    # more slots, sooner
    cb4, _ = callback(tmp_path, plan, clock, concurrency=4)
    assert cb4.progress.eta()[0] < 0.6 * eta


def test_without_planned_costs_the_unseen_trials_count_at_the_mean_of_those_seen(tmp_path, plan):
    # Ray creates the subset's trials longest first and one at a time, so the mean of those
    # seen overestimates the rest: the planned costs are what make the ETA right early
    planned, _ = simulate(tmp_path, plan, ratio=0.62, noise=0.15)
    unplanned, end = simulate(tmp_path, plan, ratio=0.62, noise=0.15, planned=False)
    assert max(errors_after(unplanned, end)) > 2 * max(errors_after(planned, end))
    assert unplanned[-1][1] == 0.0  # it still ends


def test_planned_costs_follow_the_order_ray_creates_the_trials_in(plan):
    from tune.progress_line import planned_costs
    from tune.runner import build_search
    from tune.trainable import decode_value

    _, search_alg, n = build_search(plan, "val_full_top1", 2, 0)
    points = [{k: decode_value(v) for k, v in p.items()} for p in search_alg._points_to_evaluate]
    assert planned_costs(plan) == [plan.cost(p) for p in points] and n == 24
    whole = make_plan("baseline_10pct", max_trials="all")
    assert len(planned_costs(whole)) == whole.space.size
    # random search's distinct draws are known before it starts; Optuna's are not
    rnd = make_plan("baseline_1pct", search="random", max_trials=5)
    assert planned_costs(rnd) == sorted((rnd.cost(p) for p in rnd.points), reverse=True)
    assert planned_costs(make_plan("baseline_1pct", search="optuna", max_trials=5)) is None


def test_concurrency_is_learned_from_the_trials_seen_running(tmp_path, plan):
    # the lead's run_sweep passes the concurrency; a caller that does not still gets 2 slots
    # once two trials ran at once
    samples, end = simulate(tmp_path, plan, ratio=0.62, noise=0.15, concurrency=1)
    assert max(errors_after(samples, end)) < 0.30


def test_eta_follows_a_machine_that_speeds_up(tmp_path, plan):
    # other jobs take half the machine for the first 250 s, then leave (what the benchmark met
    # on the shared development machine): no ETA can know that in advance, but within a minute
    # or so of the change the measured speed is the new one
    samples, end = simulate(tmp_path, plan, ratio=0.62, noise=0.15,
                            slowdown=lambda t: 2.0 if t < 250 else 1.0)
    after = [abs(eta - (end - t)) / (end - t) for t, eta, _, _ in samples
             if 250 + 90 <= t <= 0.95 * end]
    assert after and max(after) < 0.30, (max(after), end)


def test_a_workers_start_up_does_not_count_as_trial_time(tmp_path, plan):
    # the first trial of each worker waits for it (60 s here); its first report's train_seconds
    # leave that out, so the first measured ETA is near the truth, not 60 s per tenth too long
    samples, end = simulate(tmp_path, plan, ratio=0.62, noise=0.15, worker_start=60.0)
    first = next((t, eta) for t, eta, measured, _ in samples if measured)
    assert abs(first[1] - (end - first[0])) / (end - first[0]) < 0.30, (first, end)


def test_a_finished_sweep_shows_eta_zero(tmp_path, plan):
    samples, _ = simulate(tmp_path, plan, ratio=0.62, noise=0.0)
    assert "24/24 done" in samples[-1][3] and "ETA 0s" in samples[-1][3]


def test_schedule_span_counts_the_tail_on_one_slot():
    assert schedule_span([], [10, 10, 10, 10], 2) == 20
    assert schedule_span([30], [10, 10], 2) == 30  # the long running one is the end
    assert schedule_span([5, 1], [10], 2) == 11
    assert schedule_span([], [], 3) == 0
    assert schedule_span([1, 2, 3], [], 2) == 3  # more running than slots: all of them count
    assert abs(schedule_span([], [1.0] * 30_000, 4) - 7501) < 2  # long queues: the mean


# --- the width ---------------------------------------------------------------------------------------
LONG_CONFIG = ", ".join(f"setting_{i}=value_{i}" for i in range(20))
COUNTS = ("1234/8640 done, 16 running, 3 errored", "1234/8640 done 16 run 3 err")
ETA = ("ETA 1h05m, elapsed 2h10m", "ETA 1h05m")
BEST = ("best val_full_top1 0.9612", "best 0.9612")


@pytest.mark.parametrize("width", [80, 120])
def test_the_line_fits_the_width_keeping_counts_then_eta_then_best_then_config(width):
    text = fit_line(width, COUNTS, ETA, BEST, LONG_CONFIG)
    assert len(text) <= width
    assert COUNTS[0] in text and "ETA 1h05m" in text and "0.9612" in text
    if width == 120:  # room for the long forms and the start of the configuration
        assert text.startswith(f"sweep: {COUNTS[0]} | {ETA[0]} | {BEST[0]} (setting_0=value_0")
        assert text.endswith("…)")
    else:  # 80: the configuration goes first, then the long forms
        assert "setting_0" not in text


def test_the_line_drops_parts_in_reverse_priority_as_the_width_shrinks():
    full = fit_line(500, COUNTS, ETA, BEST, "wd=0.01, lr=0.1")
    assert full == f"sweep: {COUNTS[0]} | {ETA[0]} | {BEST[0]} (wd=0.01, lr=0.1)"
    previous = full
    for width in range(len(full), 9, -1):
        text = fit_line(width, COUNTS, ETA, BEST, "wd=0.01, lr=0.1")
        assert len(text) <= width
        assert len(text) <= len(previous)
        previous = text
        if width >= len(f"sweep: {COUNTS[0]} | ETA 1h05m"):
            assert COUNTS[0] in text and "ETA 1h05m" in text
        if width >= len(f"{COUNTS[1]} | ETA 1h05m"):
            assert "ETA 1h05m" in text
    assert fit_line(40, COUNTS, ETA, BEST, "x") == f"{COUNTS[1]} | ETA 1h05m"
    assert fit_line(20, COUNTS, ETA).endswith("…") and len(fit_line(20, COUNTS, ETA)) == 20
    # where the stream cannot write "…" (an ASCII locale) the mark is "..."
    assert fit_line(20, COUNTS, ETA, mark="...").endswith("...")


def _running_sweep(tmp_path, plan):
    clock = Clock()
    cb, ordered = callback(tmp_path, plan, clock)
    trials = []
    for i, point in enumerate(ordered[:3]):
        t = trial(f"abc_{i:05d}", {k: encode_value(v) for k, v in point.items()}, "RUNNING")
        cb.on_trial_start(0, trials, t)
        t.last_result = {"step": 50, "total_steps": 200, "val_full_top1": 0.9 + 0.01 * i}
        trials.append(t)
    clock.t += 30
    for t in trials:
        cb.on_trial_result(0, trials, t, t.last_result)
    cb.trials = trials
    return cb, clock


@pytest.mark.parametrize("width", [80, 120])
def test_the_callbacks_line_fits_80_and_120_columns(tmp_path, plan, width):
    cb, _ = _running_sweep(tmp_path, plan)
    text = cb.progress.line(width=width)
    assert len(text) <= width
    assert text.startswith("sweep: 0/24 done, 3 running, 0 errored | ETA ")
    assert "best" in text and "0.9200" in text
    if width == 120:
        assert "(" in text  # some of the best's configuration


def test_a_log_gets_plain_lines_and_a_terminal_one_line_redrawn_in_place(
    tmp_path, plan, capsys, monkeypatch
):
    import os
    import shutil

    cb, clock = _running_sweep(tmp_path, plan)
    monkeypatch.delenv("COLUMNS", raising=False)
    cb.progress._tty = False  # a log (CI, nohup): whole lines, no carriage returns or escapes
    cb.progress.print_progress()
    clock.t += cb.progress.log_every_s
    cb.progress.print_progress()
    cb.end_line()
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert len(lines) == 2 and all(len(x) <= 120 for x in lines)  # end_line: nothing new
    # a terminal of 80 columns: redrawn in place, never wider than the terminal less one
    monkeypatch.setattr(shutil, "get_terminal_size",
                        lambda fallback=(80, 24): os.terminal_size((80, 24)))
    cb.progress._tty = True
    clock.t += 1
    cb.progress.print_progress()
    clock.t += 1
    cb.progress.print_progress()
    cb.end_line()
    out = capsys.readouterr().out
    draws = out.split("\r\x1b[K")[1:]
    assert len(draws) == 3 and "\n" not in "".join(draws[:2]) and out.endswith("\n")
    assert all(len(d.rstrip("\n")) <= 79 for d in draws)


# --- what the line counts and names as best (it agrees with the end summary) ------------------------
def _finish(cb, trials, t, ray_status="TERMINATED", **result):
    """Trial `t` reports `result` (a full run of 200 steps unless it says otherwise) and Ray
    finishes it with `ray_status`."""
    t.last_result = {"step": 200, "total_steps": 200, "epoch": 5.0, "short_run": False, **result}
    cb.on_trial_result(0, trials, t, t.last_result)
    if ray_status == "ERROR":
        cb.on_trial_error(0, trials, t)
    else:
        cb.on_trial_complete(0, trials, t)
    t.status = ray_status


def _sweep_of(tmp_path, plan, results, ray_statuses=None):
    """A callback whose trials (one per entry of `results`, the plan's longest first) reported
    those results; a result with `"running": True` is still running, the others finished with
    their Ray status (TERMINATED unless `ray_statuses` says otherwise)."""
    clock = Clock()
    cb, ordered = callback(tmp_path, plan, clock)
    trials = []
    for i, (point, result) in enumerate(zip(ordered, results)):
        t = trial(f"abc_{i:05d}", {k: encode_value(v) for k, v in point.items()}, "RUNNING")
        trials.append(t)
        cb.on_trial_start(0, trials, t)
        result = dict(result)
        if result.pop("running", False):
            t.last_result = {"total_steps": 200, "short_run": False, **result}
            cb.on_trial_result(0, trials, t, t.last_result)
        else:
            _finish(cb, trials, t, (ray_statuses or {}).get(i, "TERMINATED"), **result)
    cb.trials = trials
    return cb


def test_diverged_trials_are_counted_apart_from_done(tmp_path, plan, capsys):
    # B_div in the audit: the line said "4/6 done" where the summary said 2 completed and 2
    # diverged; a diverged trial is TERMINATED for Ray but not done for us
    cb = _sweep_of(tmp_path, plan, [
        {"val_full_top1": 0.9}, {"status": "diverged", "step": 50, "val_full_top1": float("nan")},
        {"val_full_top1": 0.8, "step": 100}, {"running": True, "step": 40, "val_full_top1": 0.5},
    ], ray_statuses={2: "ERROR"})
    text = cb.progress.line(width=200)
    assert text.startswith("sweep: 1/24 done, 1 diverged, 1 running, 1 errored | ETA ")
    assert "1/24 done 1 div 1 run 1 err" in cb.progress.line(width=60)
    # no diverged trial: the counts read as before
    cb2 = _sweep_of(tmp_path / "b", plan, [{"val_full_top1": 0.9}])
    assert cb2.progress.line(width=200).startswith("sweep: 1/24 done, 0 running, 0 errored")
    # every trial finished, some diverged: the ETA is 0, nothing is left to run
    cb3 = _sweep_of(tmp_path / "c", plan, [{"val_full_top1": 0.9}] * 23 + [{"status": "diverged"}])
    assert "23/24 done, 1 diverged, 0 running, 0 errored | ETA 0s" in cb3.progress.line(width=200)


def test_a_short_run_is_never_the_best(tmp_path, plan):
    # a short run's score means little: the summary leaves it out, so the line does too
    cb = _sweep_of(tmp_path, plan, [{"val_full_top1": 0.7},
                                    {"val_full_top1": 0.99, "short_run": True}])
    assert "best val_full_top1 0.7000 (" in cb.progress.line(width=200)
    assert "0.99" not in cb.progress.line(width=200)
    best = cb.progress.best()
    assert best.trial_id == "abc_00000" and best.value == 0.7 and best.note == ""
    # only short runs: no best is named, and the line says why
    cb = _sweep_of(tmp_path / "b", plan, [{"val_full_top1": 0.99, "short_run": True},
                                          {"val_full_top1": 0.98, "short_run": True}])
    assert cb.progress.best().value is None
    text = cb.progress.line(width=200)
    assert "no best yet: 2 short run(s) left out" in text and "0.9" not in text


def test_a_running_trials_evaluation_is_marked_not_final(tmp_path, plan):
    cb = _sweep_of(tmp_path, plan, [
        {"val_full_top1": 0.7},
        {"running": True, "step": 100, "epoch": 2.5, "val_full_top1": 0.8},
    ])
    epochs = cb.table.resolved(cb.trials[1])["epochs"]
    text = cb.progress.line(width=250)
    assert f"best val_full_top1 0.8000 (running, epoch 2.5/{epochs:g}: not final) (" in text
    assert "best 0.8000 (not final)" in cb.progress.line(width=95)
    best = cb.progress.best()
    assert best.trial_id == "abc_00001" and best.value == 0.8
    # a completed trial's score is final: no mark
    cb = _sweep_of(tmp_path / "b", plan, [{"val_full_top1": 0.9},
                                          {"running": True, "step": 100, "val_full_top1": 0.8}])
    assert cb.progress.best().note == "" and "not final" not in cb.progress.line(width=250)


def test_the_line_names_the_summarys_best_also_during_seed_repeats(tmp_path, plan):
    # The seed repeats run as a second experiment whose callback sees only the repeats' trials;
    # the search's rows come in through keep_rows. The audit saw the line name a repeat (0.9360)
    # while the sweep's best was a search trial (0.9540).
    from tune.results import RESULTS_PARQUET, read_table
    from tune.summary import summarize

    search = _sweep_of(tmp_path / "search", plan, [
        {"val_full_top1": 0.954}, {"val_full_top1": 0.954}, {"val_full_top1": 0.9},
        {"val_full_top1": 0.97, "short_run": True}, {"status": "diverged"},
    ], ray_statuses={})
    search.write(final=True)
    df = read_table(tmp_path / "search" / RESULTS_PARQUET)
    repeats = _sweep_of(tmp_path / "search", plan, [{"val_full_top1": 0.936}])
    repeats.keep_rows(df)
    assert "best val_full_top1 0.9540 (" in repeats.progress.line(width=250)
    best = repeats.progress.best()
    assert (best.value, best.trial_id, best.note) == (0.954, "abc_00000", "")
    # the end summary names the same trial
    repeats.write(final=True)
    text, _ = summarize(tmp_path / "search", "val_full_top1", list(plan.axes))
    assert "best completed trial by val_full_top1: 0.9540" in text and "(trial abc_00000" in text


def test_the_best_is_found_through_the_tables_public_columns(tmp_path, plan):
    # The line reads the column order through ResultsTable.columns (it read the private
    # _columns): a table that offers only its public rows() and columns is enough, and the
    # accessor is the order of results.columns, not a handle on the table's own list.
    from tune.results import columns

    cb = _sweep_of(tmp_path, plan, [{"val_full_top1": 0.7}, {"val_full_top1": 0.9}])
    table = cb.table
    assert list(table.columns) == columns(table.tiny_k)
    assert len(table.columns) == len(table.rows()[0])
    public = SimpleNamespace(columns=table.columns, rows=table.rows)
    cb.progress.table = public
    best = cb.progress.best()
    assert best.trial_id == "abc_00001" and best.value == 0.9
