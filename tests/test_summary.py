"""The sweep's end summary (tune/summary.py): what it names as best, and what it says when it
names none. Tables are written with the results contract's own writer; no Ray, no training."""

from __future__ import annotations

from s4l_models.config import TrainConfig
from tune.results import make_row, results_frame, write_results
from tune.summary import summarize


def _table(tmp_path, trials):
    """Write a results table of `trials`: (trial_id, status, lr, val_full_top1, short_run)."""
    base = TrainConfig().to_dict()
    rows = []
    for tid, status, lr, score, short in trials:
        last = {"step": 100, "total_steps": 100, "val_full_top1": score, "short_run": short}
        rows.append(make_row(tid, status, {**base, "lr": lr}, last, str(tmp_path / tid)))
    write_results(tmp_path, results_frame(rows))


def test_a_best_score_shared_by_several_trials_says_so(tmp_path):
    _table(tmp_path, [("t0", "completed", 0.1, 0.8, False), ("t1", "completed", 0.2, 0.9, False),
                      ("t2", "completed", 0.3, 0.9, False), ("t3", "completed", 0.4, 0.9, False)])
    text, _ = summarize(tmp_path, "val_full_top1", ["lr"])
    assert "best completed trial by val_full_top1: 0.9000" in text
    assert "(trial t1: lr=0.2; 3 trials share this score, the first in the table is named)" in text
    # one best: no tie mentioned
    _table(tmp_path, [("t0", "completed", 0.1, 0.8, False), ("t1", "completed", 0.2, 0.9, False)])
    text, _ = summarize(tmp_path, "val_full_top1", ["lr"])
    assert "(trial t1: lr=0.2)" in text and "share this score" not in text


def test_a_finished_sweep_of_short_runs_only_says_no_best_is_named_and_why(tmp_path):
    # the audit's D_short: "no completed trial has a val_full_top1 yet" on a finished sweep whose
    # completed trials all had scores, but were all short runs
    _table(tmp_path, [("t0", "completed", 0.1, 0.8, True), ("t1", "completed", 0.2, 0.9, True),
                      ("t2", "errored", 0.3, 0.95, False)])
    text, completed = summarize(tmp_path, "val_full_top1", ["lr"])
    assert completed == 2
    assert "all 2 completed trial(s) are short runs: no best is named" in text
    assert "yet" not in text and "best completed trial" not in text
    # nothing completed at all: the old sentence stays true
    _table(tmp_path, [("t0", "errored", 0.1, 0.8, False)])
    text, _ = summarize(tmp_path, "val_full_top1", ["lr"])
    assert "no completed trial has a val_full_top1 yet" in text


def test_without_a_completed_trial_a_stopped_early_best_is_not_called_completed(tmp_path):
    _table(tmp_path, [("t0", "stopped_early", 0.1, 0.8, False),
                      ("t1", "stopped_early", 0.2, 0.99, True)])  # short: left out
    text, _ = summarize(tmp_path, "val_full_top1", ["lr"])
    assert ("best trial (stopped early: not a final score) by val_full_top1: 0.8000 (trial t0"
            in text)
    assert "best completed trial" not in text
