"""`s4l-train` end to end: a run writes its files; every bad input is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from s4l_models.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "s4l_models.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_run_writes_config_metrics_checkpoint_and_progress(tmp_path):
    out = tmp_path / "run"
    p = run_cli(
        "--dataset", "digits", "--labels", "10%", "--arch", "resnet18_v2", "--width", "0.25",
        "--epochs", "8", "--batch-size", "64", "--seed", "0", "--threads", "1",
        "--set", "eval_every=4", "--out", str(out),
    )
    assert p.returncode == 0, p.stderr
    assert "epoch 8" in p.stdout and "val top1 full" in p.stdout  # progress lines
    assert "completed: val_full_top1" in p.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["width"] == 0.25 and cfg["eval_every"] == 4 and cfg["wd"] == 1e-3
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] >= 8
    assert (out / "checkpoint" / "state.pt").is_file()
    assert (out / "val_predictions.npz").is_file() and (out / "splits.npz").is_file()
    # 8 epochs of 150 labeled images at batch 64: 19 steps, too short to mean anything, and said
    assert "warning: this run is too short to mean anything (19 optimizer steps" in p.stdout
    assert metrics["short_run"] is True and metrics["total_steps"] == 19
    assert "fewer than 50" in metrics["short_reason"]
    assert all(json.loads(line)["short_run"] for line in open(out / "progress.jsonl"))
    # running again into the same directory must not clobber it
    again = run_cli("--dataset", "digits", "--out", str(out))
    assert again.returncode == 2 and "--resume" in again.stderr
    # --resume of the finished run rewrites nothing
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    assert main(["--dataset", "digits", "--labels", "10%", "--arch", "resnet18_v2", "--width",
                 "0.25", "--epochs", "8", "--batch-size", "64", "--threads", "1", "--set",
                 "eval_every=4", "--out", str(out), "--resume"]) == 0
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before
    # without its checkpoint (a sweep's trial folder keeps none) the results are still refused
    (out / "checkpoint" / "state.pt").unlink()
    assert main(["--dataset", "digits", "--epochs", "1", "--out", str(out)]) == 2
    assert main(["--dataset", "digits", "--epochs", "1", "--out", str(out), "--resume"]) == 0
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before


def _bad_image_tree(root):
    for split in ("train", "val"):
        d = root / split / "n01"
        d.mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "ok.JPEG")
    (root / "train" / "n01" / "corrupt.JPEG").write_bytes(b"\xff\xd8 truncated")


BAD_INPUTS = {
    "unknown dataset": (["--dataset", "mnist3d"], "unknown dataset"),
    "unknown arch": (["--arch", "resnet7_v9"], "unknown architecture"),
    "unknown method": (["--method", "magic"], "unknown method"),
    "labels 0%": (["--labels", "0%"], "out of range"),
    "labels over 100%": (["--labels", "150%"], "out of range"),
    "too many tiny val images": (["--tiny-k", "1,5,80"], "tiny validation"),
    "val size too big": (["--val-size", "5000"], "--val-size"),
    "unknown --set key": (["--set", "learning_rate=0.1"], "unknown setting"),
    "wrong --set type": (["--set", "epochs=many"], "not a valid float"),
    "unknown flag": (["--frobnicate"], "unrecognized"),
    "missing data dir": (["--dataset", "cifar10", "--data-dir", "/nonexistent/x"], "does not exist"),
    "malformed data dir": (["--dataset", "cifar10", "--data-dir", "{tmp}"], "data_batch_1"),
    "missing fashion files": (["--dataset", "fashion_mnist", "--data-dir", "{tmp}"], "train-images"),
    "no gpu": (["--device", "cuda"], "GPU"),
    "infinite epochs": (["--epochs", "inf"], "epochs='inf' is not finite"),
    "infinite lr": (["--lr", "inf"], "is not finite"),  # it trained NaN weights, exit 0
    "negative seed": (["--seed=-1"], "--seed must be >= 0"),
    "negative split seed": (["--split-seed=-1"], "split_seed must be >= 0"),
    "batch of one": (["--batch-size", "1"], "batch norm needs 2 images"),
    "absurd batch": (["--batch-size", "99999999999"], "--batch-size must be <="),
    "no training image of a class left": (["--val-size", "1499"], "between 10 and 1490"),
    "a setting given twice": (["--set", "epochs=2", "--epochs", "3"], "epochs given twice"),
    "negative VAT weight": (["--method", "vat", "--w-vat=-1"], "w_vat must be >= 0"),
    "negative EntMin weight": (["--method", "vat_entmin", "--w-entmin=-1"], "w_entmin must be"),
    # settings of a term the method has none of: they would be ignored but shown in config.json
    "w_u without L_u": (["--method", "supervised", "--w-u", "0.5"], "does not use w_u"),
    "eps_vat without VAT": (["--method", "s4l_rotation", "--eps-vat", "8"], "not use eps_vat"),
    "EntMin on rotation": (["--method", "s4l_rotation", "--w-entmin", "0.3"], "not use w_entm"),
    "pretraining of moam": (["--method", "moam", "--pretrain-epochs", "3"], "pretrain_epochs"),
    "nothing to pseudo-label": (["--method", "pseudolabel", "--labels", "100%"], "leaves none"),
    "unreadable image": (
        ["--dataset", "imagenet", "--data-dir", "{tree}", "--val-size", "1", "--labels", "100%",
         "--tiny-k", "1", "--workers", "0", "--batch-size", "2", "--epochs", "1"],
        "corrupt.JPEG",
    ),
}


def test_a_long_enough_run_is_not_marked_short(tmp_path):
    out = tmp_path / "long"
    assert main([
        "--dataset", "digits", "--labels", "10%", "--arch", "resnet18_v2", "--width", "0.25",
        "--epochs", "30", "--batch-size", "64", "--threads", "1", "--out", str(out),
    ]) == 0  # 30 x 150 / 64 = 71 steps, the recipe's warmup scaled to 0.75 epochs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["short_run"] is False and metrics["short_reason"] == ""
    assert metrics["total_steps"] == 71 and metrics["warmup_steps"] == 1


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys):
    args, needle = BAD_INPUTS[case]
    tree = tmp_path / "tree"
    if any("{tree}" in a for a in args):
        _bad_image_tree(tree)
    args = [a.replace("{tmp}", str(tmp_path)).replace("{tree}", str(tree)) for a in args]
    if case == "no gpu":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is visible, so --device cuda is valid here")
    rc = main([*args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert needle in err
    assert "Traceback" not in err


def test_bad_input_through_the_installed_process_has_no_traceback(tmp_path):
    p = run_cli("--labels", "0%", "--out", str(tmp_path / "x"))
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_a_path_that_cannot_be_used_or_a_damaged_checkpoint_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--dataset", "digits", "--epochs", "1", "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot use {blocker / 'run'}" in err
    # a run cut short, whose checkpoint was then truncated
    out = tmp_path / "run"
    args = ["--dataset", "digits", "--labels", "10%", "--arch", "resnet18_v2", "--width", "0.25",
            "--epochs", "8", "--batch-size", "64", "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    (out / "metrics.json").unlink()  # as if it had been stopped before the end
    state = out / "checkpoint" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is unreadable" in err and "Traceback" not in err


def test_a_teacher_or_shared_splits_made_with_other_split_settings_are_refused(tmp_path, capsys):
    """A pseudo-label teacher must have learned from this run's labeled subset and never seen
    its validation images; shared splits must be the ones the run's settings make (else the
    run trains and scores on other subsets than its config.json says)."""
    tiny = ["--dataset", "digits", "--arch", "resnet18_v2", "--width", "0.125", "--epochs",
            "0.5", "--batch-size", "32", "--threads", "1"]
    teacher = tmp_path / "teacher"
    assert main([*tiny, "--labels", "10%", "--out", str(teacher)]) == 0
    capsys.readouterr()
    cases = {
        "labels": (["--labels", "1%"], "labels '10%', not '1%'"),
        "val_size": (["--val-size", "300"], "val_size 500, not 300"),
        "split_seed": (["--split-seed", "3"], "split_seed 0, not 3"),
    }
    for name, (args, needle) in cases.items():
        out = tmp_path / f"student_{name}"
        rc = main([*tiny, "--method", "pseudolabel", "--teacher", str(teacher), *args,
                   "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1, (name, err)
        assert "--teacher" in err and needle in err, (name, err)
        rc = main([*tiny, "--splits-path", str(teacher), *args, "--out", str(tmp_path / name)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1, (name, err)
        assert "--splits-path" in err and needle in err, (name, err)
    # the same split settings: the teacher labels, the shared splits are used
    ok = tmp_path / "student"
    assert main([*tiny, "--method", "pseudolabel", "--teacher", str(teacher),
                 "--splits-path", str(teacher), "--out", str(ok)]) == 0
    assert json.loads((ok / "metrics.json").read_text())["status"] == "completed"


def test_an_interrupted_run_prints_the_command_that_continues_it(tmp_path):
    """Ctrl-C prints `s4l-train ... --out DIR --resume`, which works whether or not the run
    reached its first checkpoint (a run stopped before it holds only its config.json)."""
    import shlex
    import signal
    import time

    out = tmp_path / "run"
    args = ["--dataset", "digits", "--labels", "10%", "--arch", "resnet18_v2", "--width",
            "0.25", "--epochs", "30", "--batch-size", "64", "--threads", "1"]
    p = subprocess.Popen([sys.executable, "-m", "s4l_models.cli", *args, "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "config.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted; continue with: s4l-train "), err
    cmd = shlex.split(line.split("continue with: ", 1)[1])
    assert cmd[-3:] == ["--out", str(out), "--resume"] and cmd[1:-3] == args
    assert main(cmd[1:]) == 0
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"


def test_a_run_stopped_before_its_first_checkpoint_starts_again_in_its_folder(tmp_path, capsys):
    from s4l_models.config import TrainConfig

    args = ["--dataset", "digits", "--labels", "10%", "--arch", "resnet18_v2", "--width", "0.25",
            "--epochs", "8", "--batch-size", "64", "--threads", "1"]
    values = {"dataset": "digits", "labels": "10%", "arch": "resnet18_v2", "width": "0.25",
              "epochs": "8", "batch_size": "64", "threads": "1"}
    out = tmp_path / "run"
    out.mkdir()
    # what a run writes before anything else: its config.json
    (out / "config.json").write_text(TrainConfig.from_dict(values).to_json())
    assert main([*args, "--out", str(out), "--resume"]) == 0
    assert "stopped before its first checkpoint: training from step 0" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"
    # another run's config.json is never overwritten
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(TrainConfig.from_dict({**values, "epochs": "9"}).to_json())
    for extra in ([], ["--resume"]):
        assert main([*args, "--out", str(other), *extra]) == 2
        assert "config.json" in capsys.readouterr().err
