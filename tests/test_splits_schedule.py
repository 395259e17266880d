"""Split invariants and the learning-rate schedule, checked against direct computations."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from s4l_models.config import TrainConfig
from s4l_models.data.datasets import load_dataset
from s4l_models.data.sources import IndexStream
from s4l_models.data.splits import load_splits, make_splits, splits_for
from s4l_models.errors import UserError
from s4l_models.schedule import Schedule, epoch_to_step, report_steps


@pytest.fixture(scope="module")
def digit_labels():
    return load_dataset("digits").train.labels.numpy()


def test_validation_split_is_disjoint_stratified_and_seeded(digit_labels):
    s = make_splits(digit_labels, 10, 500, "10%", (1, 5), seed=0)
    assert len(s.val) == 500 and len(s.train) == len(digit_labels) - 500
    assert not set(s.train) & set(s.val)
    assert set(s.train) | set(s.val) == set(range(len(digit_labels)))
    # class-stratified: each class's share of val matches its share of the data within 1 image
    for c in range(10):
        expected = 500 * np.mean(digit_labels == c)
        assert abs(np.sum(digit_labels[s.val] == c) - expected) <= 1
    same = make_splits(digit_labels, 10, 500, "10%", (1, 5), seed=0)
    other = make_splits(digit_labels, 10, 500, "10%", (1, 5), seed=1)
    assert np.array_equal(s.val, same.val) and np.array_equal(s.labeled, same.labeled)
    assert not np.array_equal(s.val, other.val)


def test_labeled_subset_is_class_balanced_nested_and_inside_train(digit_labels):
    ten = make_splits(digit_labels, 10, 500, "10%", (1,), seed=3)
    one = make_splits(digit_labels, 10, 500, "1%", (1,), seed=3)
    per = make_splits(digit_labels, 10, 500, "7/class", (1,), seed=3)
    full = make_splits(digit_labels, 10, 500, "100%", (1,), seed=3)
    # fractions of the whole 1,500-image training split: 10% = 15 and 1% = 1.5 -> 2 per class
    assert np.bincount(digit_labels[ten.labeled], minlength=10).tolist() == [15] * 10
    assert np.bincount(digit_labels[one.labeled], minlength=10).tolist() == [2] * 10
    assert np.bincount(digit_labels[per.labeled], minlength=10).tolist() == [7] * 10
    assert set(one.labeled) <= set(per.labeled) <= set(ten.labeled) <= set(ten.train)
    assert np.array_equal(full.labeled, full.train)


def test_imagenet_fractions_give_the_released_label_counts():
    # ILSVRC-2012: 1,281,167 training images in 1,000 classes, 50,046 held out for validation.
    # google-research/s4l's label files hold 13,000 (1%) and 128,000 (10%) images.
    labels = np.concatenate([np.repeat(np.arange(1000), 1281), np.arange(167)])
    for spec, per_class in (("1%", 13), ("10%", 128)):
        s = make_splits(labels, 1000, 50046, spec, (1,), seed=0)
        assert len(s.labeled) == 1000 * per_class
        assert set(np.bincount(labels[s.labeled], minlength=1000)) == {per_class}


def test_tiny_validation_subsets_are_nested_per_class(digit_labels):
    s = make_splits(digit_labels, 10, 500, "10%", (1, 5, 20), seed=0)
    for k in (1, 5, 20):
        assert np.bincount(digit_labels[s.tiny[k]], minlength=10).tolist() == [k] * 10
        assert set(s.tiny[k]) <= set(s.val)
    assert set(s.tiny[1]) <= set(s.tiny[5]) <= set(s.tiny[20])


def test_splits_are_saved_and_reused(tmp_path, digit_labels):
    a = splits_for(tmp_path, "digits", digit_labels, 10, 500, "10%", (1, 5), 0)
    b = load_splits(tmp_path)
    assert np.array_equal(a.labeled, b.labeled) and np.array_equal(a.tiny[5], b.tiny[5])
    again = splits_for(tmp_path, "digits", digit_labels, 10, 500, "10%", (1, 5), 0)
    assert np.array_equal(again.val, a.val)
    with pytest.raises(UserError, match="other settings"):
        splits_for(tmp_path, "digits", digit_labels, 10, 500, "1%", (1, 5), 0)


@pytest.mark.parametrize(
    "labels,tiny,val,match",
    [
        ("0%", (1,), 500, "out of range"),
        ("101%", (1,), 500, "out of range"),
        ("ten", (1,), 500, "not understood"),
        ("200/class", (1,), 500, "only"),
        ("10%", (60,), 500, "tiny validation"),
        ("10%", (1,), 5, "must be between 10 and"),
    ],
)
def test_impossible_splits_are_user_errors(digit_labels, labels, tiny, val, match):
    with pytest.raises(UserError, match=match):
        make_splits(digit_labels, 10, val, labels, tiny, seed=0)


def test_schedule_warmup_and_decays():
    # 1000 labeled images, batch 100 -> 10 steps per epoch; 20 epochs, warmup 2, decays 14/16/18
    s = Schedule.from_epochs(0.1, 100, 1000, 20, 2, (14, 16, 18))
    assert s.total_steps == 200 and s.warmup_steps == 20 and s.decay_steps == (140, 160, 180)
    peak = 0.1 * 100 / 256  # linear scaling with batch size
    assert s.peak_lr == pytest.approx(peak)
    # warmup: step k trains at (k + 1) / 20 of the peak, never at 0
    assert s.lr(0) == pytest.approx(peak / 20)
    assert s.lr(9) == pytest.approx(peak * 0.5)
    assert s.lr(19) == pytest.approx(peak)
    assert s.lr(20) == pytest.approx(peak)
    assert s.lr(139) == pytest.approx(peak)
    assert s.lr(140) == pytest.approx(peak * 0.1)
    assert s.lr(165) == pytest.approx(peak * 0.01)
    assert s.lr(199) == pytest.approx(peak * 0.001)
    # the torch scheduler applies exactly these values step by step
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=s.peak_lr)
    sched = s.scheduler(opt)
    seen = []
    for _ in range(s.total_steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([s.lr(i) for i in range(s.total_steps)])


def test_a_one_step_run_never_trains_at_lr_zero():
    # 10 labeled images, batch 1024, 100 epochs, 10 warmup epochs: one step, and it must move
    s = Schedule.from_epochs(0.1, 1024, 10, 100, 10, (70, 80, 90))
    assert s.total_steps == 1
    assert s.lr(0) > 0
    assert "fewer than 50" in s.short_reason()


@pytest.mark.parametrize("labeled,batch", [(130, 16), (130, 65), (490, 73), (1280, 192), (97, 7)])
def test_a_ten_percent_warmup_leaves_ninety_percent_of_the_steps_after_it(labeled, batch):
    # 100 epochs with 10 warmup epochs: the warmup is rounded down, so >= 90% of the steps
    # follow it whatever the steps per epoch (rounding it up gave 89.7% at 130/65)
    s = Schedule.from_epochs(0.1, batch, labeled, 100, 10, (70, 80, 90))
    assert s.steps_after_warmup >= 0.9 * s.total_steps
    assert s.short_reason() is None


def test_short_schedules_are_named():
    # 49 steps: too few; 60 steps all inside a 60-step warmup: no step at the peak
    assert "fewer than 50" in Schedule.from_epochs(0.1, 10, 49, 10, 0, ()).short_reason()
    assert "inside the warmup" in Schedule.from_epochs(0.1, 10, 60, 10, 10, ()).short_reason()
    assert Schedule.from_epochs(0.1, 10, 60, 10, 1, ()).short_reason() is None


def test_a_first_decay_inside_the_warmup_is_named_with_its_steps():
    # digits, 150 labeled images at batch 16, 6 epochs with a 5-epoch warmup and the default
    # decays at 70/80/90%: 57 steps, a 46-step warmup, decays at steps 40, 45 and 51
    s = Schedule.from_epochs(0.1, 16, 150, 6, 5, (4.2, 4.8, 5.4))
    assert (s.total_steps, s.warmup_steps, s.decay_steps) == (57, 46, (40, 45, 51))
    assert s.short_reason() == "the first lr decay, at step 40, falls inside the 46-step warmup"
    # what that means: the peak lr is reached at the warmup's last step only, then 0.01x
    lrs = [s.lr(k) for k in range(s.total_steps)]
    assert lrs.count(max(lrs)) == 1 and lrs[s.warmup_steps] == pytest.approx(s.peak_lr * 0.01)
    # a decay on the first step after the warmup leaves no step after it at the peak either
    s = Schedule.from_epochs(0.1, 10, 100, 10, 2, (2, 8))
    assert s.short_reason() == "the first lr decay, at step 20, falls at the end of the " \
        "20-step warmup"
    assert s.lr(s.warmup_steps) < s.peak_lr
    # one step later the run trains at the peak after its warmup: not named
    assert Schedule.from_epochs(0.1, 10, 100, 10, 2, (2.1, 8)).short_reason() is None
    # without a warmup, a decay at step 0 lowers the whole run's lr: not named
    assert Schedule.from_epochs(0.1, 10, 100, 10, 0, (0,)).short_reason() is None


def test_the_sweep_plan_names_a_decay_inside_the_warmup():
    # the dry run's check of each configuration is the trainer's (stages.short_run_reason):
    # 6 epochs of the baseline grid keep its 5-epoch warmup, and its decays fall inside it
    from tune.sweep_plan import make_plan, short_line

    plan = make_plan("baseline_10pct", raw_set={"epochs": "6"})
    short, total, _ = plan.short
    assert short == total > 0
    assert re.search(r"the first lr decay, at step \d+, falls inside the \d+-step warmup",
                     short_line(plan))


@pytest.mark.parametrize("labeled,batch,times", [(20, 256, "12.8"), (10, 32, "3.2"),
                                                 (8, 16, "2")])
def test_a_batch_larger_than_the_labeled_set_is_a_warning_saying_how_often(
    labeled, batch, times
):
    s = Schedule.from_epochs(0.1, batch, labeled, 1000, 0, ())
    (warning,) = s.warnings()
    assert f"the batch of {batch} is larger than the {labeled} images" in warning
    assert f"each appears {times} times per batch on average" in warning
    # what the data stream does: over `labeled` batches (`batch` epochs) every image appears
    # `batch` times, `times` per batch
    drawn = np.concatenate([IndexStream(np.arange(labeled), batch, seed=0).batch(k)
                            for k in range(labeled)])
    assert np.bincount(drawn).tolist() == [batch] * labeled
    assert s.short_reason() is None  # it means something: a warning, not a short run
    assert Schedule.from_epochs(0.1, labeled, labeled, 1000, 0, ()).warnings() == []


def test_a_warmup_shorter_than_one_step_is_a_warning():
    # 10 labeled images at batch 4: 2.5 steps per epoch; a 0.2-epoch warmup is half a step
    s = Schedule.from_epochs(0.1, 4, 10, 100, 0.2, ())
    assert s.warmup_steps == 0 and s.lr(0) == s.peak_lr  # no warmup at all
    (warning,) = s.warnings()
    assert "warmup of 0.2 epochs is shorter than one step (0.5 steps)" in warning
    assert "rounds down to none" in warning
    assert Schedule.from_epochs(0.1, 4, 10, 100, 0.4, ()).warnings() == []  # one step
    assert Schedule.from_epochs(0.1, 4, 10, 100, 0, ()).warnings() == []  # none asked


def _report_steps_listed(c: TrainConfig, s: Schedule) -> list[int]:
    """report_steps as first written: every evaluation point listed, then rounded to steps."""
    if c.eval_every > 0:
        epochs = [c.eval_every * i for i in range(1, int(c.epochs / c.eval_every + 1e-9) + 1)]
    else:
        epochs = [c.epochs * i / c.evaluations for i in range(1, c.evaluations + 1)]
    steps = {min(s.total_steps, max(1, epoch_to_step(e, s.steps_per_epoch))) for e in epochs}
    return sorted(steps | {s.total_steps})


def test_absurd_evaluation_counts_give_every_step_once_without_listing_them():
    s = Schedule.from_epochs(0.1, 16, 150, 6, 1, ())  # 57 steps
    every = list(range(1, s.total_steps + 1))
    # 1e10 points (or 6e12) listed one by one exhausted the memory
    assert report_steps(TrainConfig(epochs=6, evaluations=10**10), s) == every
    assert report_steps(TrainConfig(epochs=6, eval_every=1e-12), s) == every
    assert report_steps(TrainConfig(epochs=6, eval_every=5e-324), s) == every  # epochs/it: inf
    # around the cap the result is the listed one's, point counts below it included
    for n in range(1, 2 * s.total_steps):
        c = TrainConfig(epochs=6, evaluations=n)
        assert report_steps(c, s) == _report_steps_listed(c, s), n
        c = TrainConfig(epochs=6, eval_every=6 / n)
        assert report_steps(c, s) == _report_steps_listed(c, s), n


def test_fractional_epochs_when_the_batch_exceeds_the_labeled_set():
    # 10 labeled images, batch 256: 1000 epochs are ceil(1000 * 10 / 256) = 40 steps
    s = Schedule.from_epochs(0.1, 256, 10, 1000, 10, (700, 800, 900))
    assert s.total_steps == 40
    assert s.decay_steps == (28, 32, 36)


def test_a_class_with_a_single_image_is_one_line_naming_it():
    labels = np.r_[np.repeat(np.arange(4), 10), 4]  # class 4: one image (a folder of one file)
    with pytest.raises(UserError, match="class 4 of the training split has only 1 image"):
        make_splits(labels, 5, 10, "100%", (1,), seed=0)
