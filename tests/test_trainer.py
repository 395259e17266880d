"""The supervised trainer on digits: it learns, resumes exactly, stops on divergence, and its
metrics agree with the per-example correctness it saves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from s4l_models.config import TrainConfig
from s4l_models.data.splits import load_splits
from s4l_models.errors import UserError
from s4l_models.predictions import load_predictions
from s4l_models.run import train

TINY = dict(
    dataset="digits", labels="10%", arch="resnet18_v1", width=0.25, batch_size=32, threads=1
)
quiet = dict(log=lambda line: None)


def cfg(**kw) -> TrainConfig:
    return TrainConfig.from_dict({**TINY, **kw})


def test_short_supervised_run_learns_well_above_chance(tmp_path):
    m = train(cfg(epochs=30, eval_every=15, width=0.5), tmp_path, **quiet)
    assert m["status"] == "completed"
    # chance is 0.1; this run reaches 0.92-0.93 on seeds 0-3 with 1 or 2 threads (the spread
    # another BLAS or thread count causes is that of a seed, ~0.01): 0.6 is far from both
    assert m["val_full_top1"] > 0.6
    assert m["val_full_top5"] >= m["val_full_top1"]
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["val_full_top1"] == m["val_full_top1"]
    for k in ("val_1pc_top1", "val_1pc_top5", "val_5pc_top1", "val_5pc_top5", "test_top1"):
        assert 0 <= written[k] <= 1
    assert json.loads((tmp_path / "config.json").read_text())["arch"] == "resnet18_v1"
    assert written["schedule_warnings"] == ""  # 150 labeled images, batch 32: nothing to say


def test_metrics_equal_the_saved_per_example_correctness(tmp_path):
    m = train(cfg(epochs=4), tmp_path, **quiet)
    pred = load_predictions(tmp_path / "val_predictions.npz")
    splits = load_splits(tmp_path)
    assert np.array_equal(pred["index"], splits.val)
    assert m["val_full_top1"] == pytest.approx(pred["top1"].mean())
    assert m["val_full_top5"] == pytest.approx(pred["top5"].mean())
    tiny = np.isin(pred["index"], splits.tiny[5])
    assert m["val_5pc_top1"] == pytest.approx(pred["top1"][tiny].mean())
    assert np.all(pred["top5"] | ~pred["top1"])  # top-1 correct implies top-5 correct
    # what few-label selection reads: the predicted class is right exactly where top-1 is,
    # its stored confidence is a probability (1/255 steps) and a supervised net has no
    # rotation head
    assert pred["pred"].dtype == np.uint8 and pred["conf"].dtype == np.uint8
    assert np.array_equal(pred["pred"] == pred["label"], pred["top1"])
    assert 255 // 10 <= pred["conf"].min() and "rot" not in pred


def test_a_rotation_model_stores_how_many_rotations_its_head_names(tmp_path):
    import torch

    from s4l_models.evaluate import rotation_hits, rotations4

    train(cfg(method="s4l_rotation", epochs=2), tmp_path, **quiet)
    pred = load_predictions(tmp_path / "val_predictions.npz")
    assert pred["rot"].dtype == np.uint8 and pred["rot"].max() <= 4
    assert len(pred["rot"]) == len(pred["label"])

    # rotation_hits counts, per image, the rotations whose head output names them
    class Net(torch.nn.Module):
        def forward_features(self, x):  # the rotation index, read off a marked pixel
            return torch.stack([(x[:, 0, 0, 0] == k).float() for k in range(4)], dim=1)

    class Aug:
        def eval_view(self, x):
            return x

    x = torch.zeros(3, 1, 4, 4)
    x[:, 0, 0, 0] = 0  # upright: pixel (0, 0) holds 0; the rotations move it
    x[:, 0, 0, 3], x[:, 0, 3, 3], x[:, 0, 3, 0] = 1, 2, 3
    # rot90 k times moves the corner holding k to (0, 0), except for the last image
    assert [float(v[0, 0, 0, 0]) for v in rotations4(x)] == [0, 1, 2, 3]
    x[2, 0, 0, 3] = 9  # image 2: its 90-degree copy shows 9, which no rotation names
    hits = rotation_hits(Net(), torch.nn.Identity(), [(x, torch.zeros(3))], Aug())
    assert hits.tolist() == [4, 4, 3]


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    c = cfg(epochs=6, eval_every=2)
    straight = train(c, tmp_path / "a", **quiet)

    class Interrupt(Exception):
        pass

    reports = []

    def stop_after_second(metrics, ckpt):
        reports.append(metrics["step"])
        if len(reports) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(c, tmp_path / "b", report=stop_after_second, **quiet)
    resumed_reports = []
    resumed = train(
        c,
        tmp_path / "b",
        report=lambda m, ck: resumed_reports.append(m["step"]),
        resume_from=tmp_path / "b" / "checkpoint",
        **quiet,
    )
    assert resumed_reports[0] > reports[-1]  # trained only the remaining steps
    a = torch.load(tmp_path / "a/checkpoint/state.pt", weights_only=True)
    b = torch.load(tmp_path / "b/checkpoint/state.pt", weights_only=True)
    assert a["step"] == b["step"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert straight["val_full_top1"] == resumed["val_full_top1"]
    # resumed on another machine (an object-store sweep's trial restarted on another node):
    # only the checkpoint travels, and its history restores the earlier progress lines
    import shutil

    shutil.copytree(tmp_path / "b" / "checkpoint", tmp_path / "moved_ckpt")
    (tmp_path / "b" / "progress.jsonl").unlink()
    steps_before = [json.loads(x)["step"] for x in (tmp_path / "a" / "progress.jsonl").open()]
    train(c, tmp_path / "c", resume_from=tmp_path / "moved_ckpt", **quiet)
    got = [json.loads(x)["step"] for x in (tmp_path / "c" / "progress.jsonl").open()]
    assert got == steps_before


def _steps(run) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "progress.jsonl").open()]


def test_a_kill_between_a_checkpoint_and_its_progress_line_loses_no_line(
    tmp_path, kill_after_checkpoint, capsys
):
    from s4l_models.cli import main
    from s4l_models.trainer import finished_result

    args = ["--dataset", "digits", "--labels", "10%", "--arch", "resnet18_v1", "--width",
            "0.25", "--batch-size", "32", "--threads", "1", "--epochs", "6", "--set",
            "eval_every=2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    want = _steps(tmp_path / "a")
    assert len(want) == 3

    kill_at = set(want[1:])  # after the middle evaluation's checkpoint, then the last one's

    def when(trainer, state):
        hit = state.step in kill_at
        kill_at.discard(state.step)
        return hit

    Killed = kill_after_checkpoint(when)
    out = tmp_path / "b"
    with pytest.raises(Killed):
        main([*args, "--out", str(out)])
    assert _steps(out) == want[:1]  # the checkpoint at want[1] holds a line the file lacks
    with pytest.raises(Killed):
        main([*args, "--out", str(out), "--resume"])
    assert _steps(out) == want[:2]  # restored from the checkpoint's history
    assert finished_result(out) is None  # killed before its metrics.json
    assert main([*args, "--out", str(out), "--resume"]) == 0  # resumes at the final step
    assert _steps(out) == want
    done = finished_result(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert done is not None and done["step"] == metrics["steps"] == want[-1]
    capsys.readouterr()
    assert main([*args, "--out", str(out), "--resume"]) == 0
    assert "already finished" in capsys.readouterr().out
    # the checkpoint clock runs across the three processes like the others: the line at want[1]
    # counts the first checkpoint's write (a line's clocks stop at its evaluation), and the
    # last process, which wrote no checkpoint, keeps that time
    lines = [json.loads(line) for line in (out / "progress.jsonl").open()]
    ckpt = [line["checkpoint_seconds"] for line in lines]
    assert ckpt[0] == 0 < ckpt[1] <= ckpt[2] <= metrics["checkpoint_seconds"]
    assert metrics["train_seconds"] >= lines[-1]["train_seconds"] >= metrics["eval_seconds"]


def test_a_schedule_that_does_not_mean_its_settings_is_said_and_flagged(tmp_path):
    lines = []
    # 10 labeled images, batch 32: each is 3.2 times in a batch; a 1-epoch warmup is 0.3
    # steps and rounds down to none
    m = train(cfg(labels="1/class", epochs=8, warmup_epochs=1), tmp_path, log=lines.append)
    assert m["status"] == "completed" and m["warmup_steps"] == 0
    warned = [line for line in lines if line.startswith("warning: ")]
    assert any("batch of 32 is larger than the 10 images" in w and "3.2 times" in w
               for w in warned), warned
    assert any("warmup of 1 epochs" in w and "rounds down to none" in w for w in warned)
    saved = json.loads((tmp_path / "metrics.json").read_text())["schedule_warnings"]
    assert "3.2 times" in saved and "rounds down to none" in saved


def test_polyak_runs_store_the_rotation_hits_of_the_averaged_network(tmp_path):
    from s4l_models.evaluate import rotation_hits
    from s4l_models.methods.s4l_rotation import ROTATION_HEAD
    from s4l_models.trainer import Trainer

    # channels_last off: the recomputation below scores in the layout the trainer scored in
    c = cfg(method="s4l_rotation", polyak=True, epochs=2, channels_last=False)
    train(c, tmp_path, **quiet)
    saved = load_predictions(tmp_path / "val_predictions.npz")["rot"]
    # the Polyak average of the checkpoint, body and heads, in a network built afresh
    trainer = Trainer(c, tmp_path, **quiet)
    state = trainer.build()
    average = torch.load(tmp_path / "checkpoint/state.pt", weights_only=True)["polyak"]
    state.polyak.average.load_state_dict(average)
    live = torch.load(tmp_path / "checkpoint/state.pt", weights_only=True)["heads"]
    head = state.polyak.average["heads"][ROTATION_HEAD]
    # the average's rotation head is averaged: not the live one
    assert any(not torch.equal(v, live[f"{ROTATION_HEAD}.{k}"])
               for k, v in head.state_dict().items())
    want = rotation_hits(
        state.polyak.average["model"], head,
        trainer.source.eval_batches(trainer.splits.val, trainer.eval_batch),
        trainer.augment, trainer.autocast,
    )
    assert np.array_equal(saved, want)


def test_the_evaluation_cadence_changes_when_a_run_is_scored_not_the_model(tmp_path):
    seen = {10: [], 4: []}
    runs = {}
    for n in seen:
        runs[n] = train(cfg(epochs=8, evaluations=n), tmp_path / str(n),
                        report=lambda m, ck, n=n: seen[n].append(m), **quiet)
    assert len(seen[10]) == 10 and len(seen[4]) == 4
    assert seen[4][-1]["step"] == seen[10][-1]["step"] == runs[4]["steps"]  # the last at the end
    for key in ("val_full_top1", "val_1pc_top1", "test_top1", "test_top5"):
        assert runs[4][key] == runs[10][key], key
    a = torch.load(tmp_path / "10/checkpoint/state.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "4/checkpoint/state.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # every evaluation reports the scoring time so far; the test split is scored only at the end
    for n, reports in seen.items():
        secs = [m["eval_seconds"] for m in reports]
        assert secs == sorted(secs) and 0 < secs[-1] <= runs[n]["train_seconds"]
        assert runs[n]["eval_seconds"] == secs[-1]
        assert all("test_top1" not in m for m in reports[:-1]) and "test_top1" in reports[-1]
    # a run may resume under another cadence (RESUME_FREE): the checkpoint is accepted
    train(cfg(epochs=8, evaluations=7), tmp_path / "4", resume_from=tmp_path / "4/checkpoint",
          **quiet)


def test_the_scoring_batch_is_chosen_by_device_unless_given(tmp_path):
    from s4l_models.config import AUTO_EVAL_BATCH
    from s4l_models.trainer import Trainer

    assert TrainConfig().eval_batch("cpu") == AUTO_EVAL_BATCH["cpu"] < AUTO_EVAL_BATCH["cuda"]
    assert TrainConfig().eval_batch("cuda") == AUTO_EVAL_BATCH["cuda"]
    assert TrainConfig(eval_batch_size=300).eval_batch("cuda") == 300
    trainer = Trainer(cfg(epochs=1, device="cpu"), tmp_path, **quiet)
    assert trainer.eval_batch == AUTO_EVAL_BATCH["cpu"]


def test_cpu_scoring_in_channels_last_leaves_training_untouched(tmp_path):
    from s4l_models.evaluate import scoring_layout

    runs = {cl: train(cfg(epochs=4, evaluations=3, device="cpu", channels_last=cl),
                      tmp_path / str(cl), **quiet) for cl in (True, False)}
    a = torch.load(tmp_path / "True/checkpoint/state.pt", weights_only=True)
    b = torch.load(tmp_path / "False/checkpoint/state.pt", weights_only=True)
    # the weights go back to the contiguous layout after every scoring pass: the same training
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(a["model"][k].is_contiguous() for k in a["model"])
    # the same model scored in either layout: the same predictions up to float rounding
    assert abs(runs[True]["val_full_top1"] - runs[False]["val_full_top1"]) <= 0.01
    # scoring builds no autograd graph, in either layout
    from s4l_models.evaluate import scored_examples

    seen = []
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6))
    net.register_forward_hook(lambda mod, inp, out: seen.append(out.requires_grad))
    view = type("View", (), {"eval_view": staticmethod(lambda x: x)})
    batches = [(torch.zeros(2, 3, 2, 2), torch.tensor([0, 1]))]
    scored_examples(net, batches, view)
    assert seen == [False]
    model = torch.nn.Conv2d(3, 4, 3)
    with scoring_layout(model, True):
        assert model.weight.is_contiguous(memory_format=torch.channels_last)
        assert not model.weight.is_contiguous()
    assert model.weight.is_contiguous()


def test_resume_with_other_settings_is_refused(tmp_path):
    train(cfg(epochs=2), tmp_path, **quiet)
    with pytest.raises(UserError, match="other settings"):
        train(cfg(epochs=2, lr=0.3), tmp_path, resume_from=tmp_path / "checkpoint", **quiet)


def test_same_seed_same_result_other_seed_other_result(tmp_path):
    m1 = train(cfg(epochs=3), tmp_path / "1", **quiet)
    m2 = train(cfg(epochs=3), tmp_path / "2", **quiet)
    train(cfg(epochs=3, seed=1), tmp_path / "3", **quiet)
    assert m1["val_full_top1"] == m2["val_full_top1"]
    w1 = torch.load(tmp_path / "1/checkpoint/state.pt", weights_only=True)["model"]
    w3 = torch.load(tmp_path / "3/checkpoint/state.pt", weights_only=True)["model"]
    assert not torch.equal(w1["conv1.weight"], w3["conv1.weight"])


def test_non_finite_loss_stops_the_run_as_diverged(tmp_path):
    m = train(cfg(epochs=4, lr=1e30, warmup_epochs=0), tmp_path, **quiet)
    assert m["status"] == "diverged"
    assert "loss became" in m["message"] and "--lr" in m["message"]
    assert m["steps"] < m["total_steps"]
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"


def _image_folder(root, bad=False):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(6 if split == "train" else 2):
                arr = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{c}_{i}.JPEG")
    if bad:
        (root / "train" / "n01" / "broken.JPEG").write_bytes(b"not a jpeg at all")


def test_skipped_unreadable_images_are_no_model_s_errors(tmp_path):
    # --skip-bad-images: an unreadable validation or test image is in no accuracy's numerator
    # or denominator (it was scored as wrong), the predictions leave it out as the metrics do,
    # and skipped_images counts files, not visits (2 evaluations visited it twice)
    from s4l_models.data.datasets import load_dataset
    from s4l_models.data.splits import make_splits

    root = tmp_path / "data"
    _image_folder(root, bad=True)  # train/n01/broken.JPEG: the first training file
    (root / "val" / "n02" / "broken.JPEG").write_bytes(b"not a jpeg either")
    d = load_dataset("imagenet", str(root))
    bad = [i for i, path in enumerate(d.train.paths) if path.endswith("broken.JPEG")]
    seed = next(s for s in range(50)
                if bad[0] in make_splits(d.train.labels, 2, 4, "100%", (1,), s).val)
    c = cfg(dataset="imagenet", data_dir=str(root), val_size=4, labels="100%", tiny_k=(1,),
            epochs=2, batch_size=4, workers=0, eval_batch_size=4, evaluations=2,
            split_seed=seed, skip_bad_images=True)
    m = train(c, tmp_path / "run", **quiet)
    assert m["status"] == "completed" and m["skipped_images"] == 2  # one val, one test file
    p = load_predictions(tmp_path / "run" / "val_predictions.npz")
    assert list(p["unreadable"]) == bad and (p["label"] >= 0).all() and len(p["top1"]) == 3
    assert m["val_full_top1"] == pytest.approx(p["top1"].mean())  # 3 readable of 4
    assert round(m["test_top1"] * 4) == pytest.approx(m["test_top1"] * 4)  # 4 readable of 5


def test_file_backed_imagenet_layout_trains_through_dataloader(tmp_path):
    _image_folder(tmp_path / "data")
    c = cfg(
        dataset="imagenet", data_dir=str(tmp_path / "data"), val_size=4, labels="100%",
        tiny_k=(1,), epochs=1, batch_size=4, workers=0, eval_batch_size=4,
    )
    m = train(c, tmp_path / "run", **quiet)
    assert m["status"] == "completed" and m["num_val"] == 4
    assert 0 <= m["test_top1"] <= 1  # the public val folder is the test split


def test_file_backed_evaluation_keeps_one_loader_with_persistent_workers(tmp_path):
    from s4l_models.trainer import Trainer

    _image_folder(tmp_path / "data")
    c = cfg(
        dataset="imagenet", data_dir=str(tmp_path / "data"), val_size=4, labels="100%",
        tiny_k=(1,), epochs=2, eval_every=1, batch_size=4, workers=1, eval_batch_size=4,
    )
    trainer = Trainer(c, tmp_path / "run", **quiet)
    m = trainer.run()
    assert m["status"] == "completed" and m["eval_seconds"] > 0 and m["checkpoint_seconds"] > 0
    loaders = list(trainer.source._eval_loaders.values())
    assert len(loaders) == 1  # two evaluations of the validation split, one loader
    assert loaders[0].persistent_workers and loaders[0].num_workers == 1


def test_unreadable_image_is_named_or_skipped(tmp_path):
    _image_folder(tmp_path / "data", bad=True)
    base = dict(
        dataset="imagenet", data_dir=str(tmp_path / "data"), val_size=4, labels="100%",
        tiny_k=(1,), epochs=2, batch_size=9, workers=0, eval_batch_size=4,
    )
    with pytest.raises(UserError, match="broken.JPEG"):
        train(cfg(**base), tmp_path / "run", **quiet)
    m = train(cfg(**base, skip_bad_images=True), tmp_path / "run2", **quiet)
    assert m["status"] == "completed" and m["skipped_images"] >= 1
