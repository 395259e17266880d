"""Multi-stage methods (pseudolabel, selfsup_linear, selfsup_finetune, moam): `run_stages`.

Each stage is the trainer's single-stage loop (`s4l_models.trainer.Trainer`) with the stage's
derived settings, in `out_dir/stage_<i>_<name>/` (its own config.json, progress.jsonl,
metrics.json and val_predictions.npz). There is one live checkpoint directory,
`out_dir/checkpoint/`, holding the current stage's state.pt, `pipeline.json` (which stage is
running and the metrics of the finished ones) and what the current stage was started from (the
previous stage's final weights, the pseudo-labels): it is self-contained, so a copy of it (what
Ray Tune restores) resumes the whole run. Resuming skips the finished stages and continues the
current one from its checkpoint; the top-level metrics.json and val_predictions.npz are the
final stage's, with the earlier stages' headline metrics under `<stage name>_` prefixed keys.
`s4l_models.trainer.train` sends a method with stages here.

The run's clocks (`CLOCKS`) in its metrics.json and in every report are the sums over its
stages, and its `train_seconds` also holds the pseudo-labelling passes between them
(`pseudo_label_seconds`, kept in pipeline.json across resumes): on ImageNet MOAM labels 1.2M
images in 20 views each, no small part of the trial's cost.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import (
    CHECKPOINT_DIR,
    CHECKPOINT_FILE,
    check_resumable,
    load_weights,
    read_state,
)
from .config import TrainConfig
from .data.augment import Augmenter
from .data.datasets import LoadedDataset, load_dataset
from .data.sources import make_source
from .data.splits import Splits, split_request
from .errors import UserError
from .evaluate import VIEWS, pseudo_labels
from .io import atomic_write, atomic_write_bytes, atomic_write_text
from .methods import Method, get_method
from .methods.base import Stage
from .predictions import TRIAL_PREDICTIONS
from .resnet import create_model
from .schedule import Schedule
from .trainer import (
    CLOCKS,
    PIPELINE_FILE,
    Report,
    Trainer,
    autocast_context,
    record_progress,
    resolve_device,
    resolve_splits,
    restore_progress,
)

# Headline metrics of finished stages copied into the run's final metrics as "<stage>_<key>".
STAGE_KEYS = (
    "val_full_top1",
    "val_full_top5",
    "val_1pc_top1",
    "val_5pc_top1",
    "test_top1",
    "test_top5",
    "epochs",
    "steps",
    *CLOCKS,
)
LABEL_CLOCK = "pseudo_label_seconds"  # the pipeline state's time spent pseudo-labelling


def _run_clocks(state: dict, current: dict | None = None) -> dict[str, float]:
    """The run's CLOCKS: the finished stages' (pipeline state) plus `current`'s, if given, and
    the pseudo-labelling passes in train_seconds (the run's wall time)."""
    clocks = {k: sum(d["metrics"].get(k, 0.0) for d in state["finished"])
              + (current.get(k, 0.0) if current else 0.0) for k in CLOCKS}
    clocks["train_seconds"] += state.get(LABEL_CLOCK, 0.0)
    return clocks


def _timed_labels(state: dict, label: Callable[[], Any]) -> None:
    """Run one pseudo-labelling pass `label()` and add its wall time to the pipeline state."""
    t0 = time.perf_counter()
    label()
    state[LABEL_CLOCK] = state.get(LABEL_CLOCK, 0.0) + time.perf_counter() - t0


def _stage_dir(out: Path, i: int, stage: Stage) -> Path:
    return out / f"stage_{i + 1}_{stage.name}"


def _init_file(i: int) -> str:
    return f"stage_{i + 1}_init.pt"


def _pseudo_file(i: int) -> str:
    return f"stage_{i + 1}_pseudo_labels.npz"


def _checkpoint_stage(path: Path) -> tuple[int | None, list[dict]]:
    """(index of the stage that wrote state.pt, its history): (None, []) when there is none;
    reads it lazily."""
    if not path.is_file():
        return None, []
    payload = read_state(path, mmap=True)
    stage = payload.get("stage")
    return (None if stage is None else int(stage)), list(payload.get("history", []))


def _write_pipeline(ckdir: Path, state: dict) -> None:
    atomic_write_text(ckdir / PIPELINE_FILE, json.dumps(state, indent=2))


def _start_pipeline(
    cfg: TrainConfig, ckdir: Path, resume_from: str | os.PathLike | None
) -> dict[str, Any]:
    """Fresh: clear old pipeline files. Resume: adopt the given checkpoint directory's state."""
    if resume_from is None:
        if ckdir.is_dir():
            for f in ckdir.iterdir():
                if f.is_file() and (f.name == PIPELINE_FILE or f.name.startswith("stage_")):
                    f.unlink()
        state = {"method": cfg.method, "config": cfg.to_dict(), "stage": 0, "finished": []}
        _write_pipeline(ckdir, state)
        return state
    src = Path(resume_from)
    if src.is_file():
        src = src.parent
    if not (src / PIPELINE_FILE).is_file():
        raise UserError(
            f"{src} holds no {PIPELINE_FILE}, so it is not a checkpoint of a multi-stage "
            f"{cfg.method} run; start a fresh run instead of resuming"
        )
    if src.resolve() != ckdir.resolve():  # e.g. a checkpoint Ray Tune restored elsewhere
        ckdir.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file():
                shutil.copy2(f, ckdir / f.name)
    state = json.loads((ckdir / PIPELINE_FILE).read_text())
    saved, now = state["config"], cfg.to_dict()
    check_resumable(saved, now, src)
    return state


def teacher_model(path: str | os.PathLike, cfg: TrainConfig, device: torch.device) -> nn.Module:
    """The network of a finished run (its Polyak average when it has one), for pseudo-labels."""
    w = load_weights(path, device)
    tcfg = w["config"] or {}
    if tcfg.get("dataset", cfg.dataset) != cfg.dataset:
        raise UserError(
            f"--teacher {path} was trained on {tcfg['dataset']}, not {cfg.dataset}; give a run "
            "on the same dataset"
        )
    data = load_dataset(cfg.dataset, cfg.data_dir)
    # the teacher must have learned from this run's labeled subset and never seen its
    # validation images: the same labels spec, validation split and split seed
    ours = split_request(cfg.to_dict(), data.spec.default_val_size)
    theirs = split_request(tcfg, data.spec.default_val_size)
    diff = [k for k in ("labels", "val_size", "split_seed") if theirs[k] != ours[k]]
    if diff:
        raise UserError(
            f"--teacher {path} was trained on other splits "
            f"({', '.join(f'{k} {theirs[k]!r}, not {ours[k]!r}' for k in diff)}): its labels "
            "would not be this run's labeled subset, or it saw this run's validation images; "
            "give a teacher trained with the same --labels, --val-size and --split-seed"
        )
    model = create_model(
        tcfg.get("arch", cfg.arch),
        width=tcfg.get("width", cfg.width),
        num_classes=len(data.classes),
        image_size=data.spec.image_size,
        in_chans=data.spec.channels,
    ).to(device)
    try:
        model.load_state_dict(w["model"])
    except RuntimeError as err:
        raise UserError(f"--teacher {path} does not fit its own settings: {err}") from None
    return model


def write_pseudo_labels(
    model: nn.Module, cfg: TrainConfig, splits: Splits, views: str, path: Path
) -> int:
    """Label every image of the training split with `model`; returns how many labels reach
    the confidence threshold. Writes index/label/confidence to `path`."""
    device = resolve_device(cfg.device)
    data = load_dataset(cfg.dataset, cfg.data_dir)
    source = make_source(data.train, data.spec, device, cfg.workers, cfg.skip_bad_images)
    augment = Augmenter(data.spec, device, pre_cropped=source.pre_cropped)

    pred, conf = pseudo_labels(
        model,
        source.eval_batches(splits.train, cfg.eval_batch(device.type)),
        augment,
        lambda: autocast_context(device, cfg.amp),
        views=VIEWS[views],
    )
    import io

    buf = io.BytesIO()
    np.savez_compressed(
        buf, index=splits.train.astype(np.int64), label=pred, confidence=conf, views=views
    )
    atomic_write_bytes(path, buf.getvalue())
    return int((conf >= cfg.pseudo_threshold).sum())


def _pseudo_inputs(cfg: TrainConfig, data: LoadedDataset, path: Path, labeled: np.ndarray):
    """(indices kept, labels for the whole training array, labeled images the teacher got
    wrong) from a pseudo-label file.

    The teacher's predictions label the unlabeled images (those below `pseudo_threshold` are
    left out); the labeled subset keeps its true labels and is always kept, as the released
    code trains (google-research/s4l datasets.py reads the original label where `label_flag`
    is 1). The paper says only that it labels "the full dataset" (README, "Where we differ").
    """
    with np.load(path) as z:
        index, label, conf = z["index"], z["label"], z["confidence"]
    own = np.isin(index, labeled)
    keep = (conf >= cfg.pseudo_threshold) & ~own
    if own.all():
        raise UserError(
            f"--labels {cfg.labels} labels every training image, so there is none to "
            "pseudo-label; use fewer labels"
        )
    if not keep.any():
        best = conf[~own].max()
        raise UserError(
            f"no pseudo-label of an unlabeled image reaches pseudo_threshold "
            f"{cfg.pseudo_threshold:g} (highest confidence {best:.3f}); lower the threshold"
        )
    labels = data.train.labels.numpy().copy()
    wrong = int((label[own] != labels[index[own]]).sum())
    labels[index[~own]] = label[~own]
    return np.sort(index[keep | own]), labels, wrong


def run_schedules(
    cfg: TrainConfig, num_labeled: int, num_train: int
) -> list[tuple[str, Schedule]]:
    """(stage name, learning-rate schedule) of every stage a run of `cfg` trains, for a dataset
    with `num_labeled` labeled images and `num_train` images in its training part (what a stage
    with data="all" passes over). A single-stage method has one, named after the method."""
    method = get_method(cfg.method)
    stages = method.stages(cfg) if method.stages is not None else [Stage(cfg.method, method, cfg)]
    return [
        (
            st.name,
            Schedule.from_epochs(
                st.cfg.lr,
                st.cfg.batch_size,
                max(1, num_train if st.data == "all" else num_labeled),
                st.cfg.epochs,
                st.cfg.warmup_epochs,
                st.cfg.resolved_decay_epochs(),
            ),
        )
        for st in stages
    ]


def run_schedule_warnings(cfg: TrainConfig, num_labeled: int, num_train: int) -> list[str]:
    """What in a run of `cfg`'s schedules is not what its settings read (`Schedule.warnings`),
    each stage's named when there are several."""
    schedules = run_schedules(cfg, num_labeled, num_train)
    return [w if len(schedules) == 1 else f"stage {name}: {w}"
            for name, sched in schedules for w in sched.warnings()]


def short_run_reason(cfg: TrainConfig, num_labeled: int, num_train: int) -> str | None:
    """Why a run of `cfg` is too short to mean anything (its first short stage), or None."""
    schedules = run_schedules(cfg, num_labeled, num_train)
    for name, sched in schedules:
        reason = sched.short_reason()
        if reason:
            return reason if len(schedules) == 1 else f"stage {name}: {reason}"
    return None


def run_stages(
    cfg: TrainConfig,
    method: Method,
    out_dir: str | os.PathLike,
    report: Report | None = None,
    resume_from: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run a multi-stage method: each stage a `Trainer` run, one shared live checkpoint (in
    `checkpoint_dir`, default `out_dir`/checkpoint)."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda line: print(line, flush=True))
    stages = method.stages(cfg)
    for st in stages:
        st.cfg.validate()
    ckdir = Path(checkpoint_dir).resolve() if checkpoint_dir else out / CHECKPOINT_DIR
    ckdir.mkdir(parents=True, exist_ok=True)
    state = _start_pipeline(cfg, ckdir, resume_from)
    atomic_write_text(out / "config.json", cfg.to_json())
    data = load_dataset(cfg.dataset, cfg.data_dir)
    splits = resolve_splits(cfg, out, data)
    splits_path = cfg.splits_path or str(out)
    device = resolve_device(cfg.device)
    n = len(stages)
    # the whole run is short when one of its stages is: every stage says so in its log and
    # its metrics
    short = short_run_reason(cfg, len(splits.labeled), len(splits.train))
    final: dict[str, Any] = {}
    for i in range(int(state["stage"]), n):
        stage = stages[i]
        tag = f"stage {i + 1}/{n} {stage.name}"
        scfg = dataclasses.replace(stage.cfg, splits_path=splits_path)
        labeled = splits.train if stage.data == "all" else None
        train_labels = None
        if stage.labels == "pseudo":
            pfile = ckdir / _pseudo_file(i)
            if not pfile.is_file():
                if i > 0 or cfg.teacher is None:
                    raise UserError(
                        f"the checkpoint in {ckdir} lacks the pseudo-labels of {tag}; start a "
                        "fresh run"
                    )
                log(f"[{tag}] labelling {len(splits.train)} training images with {cfg.teacher}")
                _timed_labels(state, lambda: write_pseudo_labels(
                    teacher_model(cfg.teacher, cfg, device), cfg, splits, stage.pseudo_views, pfile
                ))
                _write_pipeline(ckdir, state)  # keeps its time
            labeled, train_labels, teacher_wrong = _pseudo_inputs(
                scfg, data, pfile, splits.labeled
            )
        init = None
        if stage.init and i > 0:
            init = ckdir / _init_file(i)
            if not init.is_file():
                raise UserError(
                    f"the checkpoint in {ckdir} lacks the starting weights of {tag}; start a "
                    "fresh run"
                )

        def stage_report(m, ck, i=i, stage=stage):
            line = {**m, "stage": i + 1, "stage_name": stage.name}
            record_progress(out / "progress.jsonl", line)
            if report is not None:
                # the run's clocks over all its stages so far, not this stage's alone: a sweep's
                # results table reads a trial's cost off its last report
                report({**m, **_run_clocks(state, m), "stage": i + 1, "num_stages": n}, ck)

        trainer = Trainer(
            scfg,
            _stage_dir(out, i, stage),
            report=stage_report,
            log=lambda line, tag=tag: log(f"[{tag}] {line}"),
            method=stage.method,
            labeled=labeled,
            train_labels=train_labels,
            checkpoint_dir=ckdir,
            init_weights=init,
            checkpoint_extra={"stage": i},
            short_reason=short,
        )
        live = ckdir / CHECKPOINT_FILE
        resume = None
        if resume_from is not None:
            live_stage, history = _checkpoint_stage(live)
            if live_stage == i:
                resume = live
                # the run's lines of this stage that a kill after the checkpoint (before its
                # report wrote them here) lost; the trainer restores the stage's own file
                restore_progress(out / "progress.jsonl", [
                    {**h, "stage": i + 1, "stage_name": stage.name} for h in history
                ])
        m = trainer.run(resume_from=resume)
        if labeled is not None and stage.labels == "pseudo":
            m["num_pseudo_labeled"] = int(len(labeled))
            m["num_labeled_teacher_wrong"] = teacher_wrong  # kept their true labels
        if m["status"] != "completed":
            final = {**m, "message": f"{tag}: {m['message']}"}
            break
        state["finished"].append(
            {"name": stage.name, "metrics": {k: m[k] for k in STAGE_KEYS if k in m}}
        )
        final = m
        if i + 1 < n:
            nxt = stages[i + 1]
            if nxt.init:
                weights = trainer.state.final_weights()
                atomic_write(ckdir / _init_file(i + 1), lambda tmp, w=weights: torch.save(w, tmp))
            if nxt.labels == "pseudo":
                log(f"[stage {i + 2}/{n} {nxt.name}] labelling {len(splits.train)} training "
                    f"images ({nxt.pseudo_views})")
                _timed_labels(state, lambda: write_pseudo_labels(
                    trainer.state.eval_model, nxt.cfg, splits, nxt.pseudo_views,
                    ckdir / _pseudo_file(i + 1),
                ))
            state["stage"] = i + 1
            _write_pipeline(ckdir, state)  # the commit point of the stage boundary
            for f in (ckdir / _init_file(i), ckdir / _pseudo_file(i)):
                f.unlink(missing_ok=True)
        else:
            state["stage"] = n
            _write_pipeline(ckdir, state)
            for f in (ckdir / _init_file(i), ckdir / _pseudo_file(i)):
                f.unlink(missing_ok=True)
    # the run's metrics: the last stage's, with the earlier stages' headline figures prefixed
    last = min(int(state["stage"]), n - 1)
    last_dir = _stage_dir(out, last, stages[last])
    if not final:  # resumed a run whose stages had all finished
        saved = last_dir / "metrics.json"
        final = json.loads(saved.read_text()) if saved.is_file() else {
            **state["finished"][-1]["metrics"], "status": "completed", "message": ""
        }
    completed = final.get("status") == "completed"
    clocks = _run_clocks(state, None if completed else final)
    for done in state["finished"][:-1] if completed else state["finished"]:
        for k, v in done["metrics"].items():
            final[f"{done['name']}_{k}"] = v
    final.update(clocks)  # all stages together
    final[LABEL_CLOCK] = state.get(LABEL_CLOCK, 0.0)
    # every stage's schedule warnings (each stage's metrics.json holds its own)
    warned = []
    for j in range(last + 1):
        saved = _stage_dir(out, j, stages[j]) / "metrics.json"
        w = json.loads(saved.read_text()).get("schedule_warnings") if saved.is_file() else ""
        if w:
            warned.append(f"stage {stages[j].name}: {w}")
    final["schedule_warnings"] = "; ".join(warned)
    final["num_labeled"] = int(len(splits.labeled))
    final["stages"] = ",".join(st.name for st in stages)
    final["num_stages"] = n
    if (last_dir / TRIAL_PREDICTIONS).is_file():
        shutil.copy2(last_dir / TRIAL_PREDICTIONS, out / TRIAL_PREDICTIONS)
    atomic_write_text(out / "metrics.json", json.dumps(final, indent=2))
    return final


__all__ = [
    "run_stages",
    "run_schedules",
    "short_run_reason",
    "teacher_model",
    "write_pseudo_labels",
    "STAGE_KEYS",
]
