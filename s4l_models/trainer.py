"""The one trainer: any method of the registry, any dataset, CPU or CUDA, resumable.

`train(cfg, out_dir, report=...)` runs the paper's recipe (SGD with momentum, linear warmup,
x0.1 step decays, epochs over the labeled data, lr scaled by batch/256) and returns the final
metrics. At every evaluation point it writes an atomic checkpoint (model, optimiser, schedule
position, RNG state) and calls `report(metrics, checkpoint_dir)`; Ray Tune's trainable passes a
callable that forwards both to `tune.report`, tests pass a plain function. Data order and
augmentation are functions of (seed, step), so resuming from a checkpoint reproduces the
uninterrupted run exactly on CPU.

Files in `out_dir`: config.json, splits.npz/json (unless `splits_path` points at shared ones),
checkpoint/state.pt, progress.jsonl (one line per evaluation), metrics.json (final) and
val_predictions.npz (per-example correctness of the final evaluation).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import TrainConfig
from .data.augment import Augmenter
from .data.datasets import DATASETS, LoadedDataset, load_dataset
from .data.sources import IndexStream, make_source
from .data.splits import Splits, load_splits, splits_for
from .errors import UserError
from .evaluate import correctness, save_predictions, subset_metrics
from .io import atomic_write, atomic_write_text
from .methods import Batch, StepContext, get_method
from .resnet import create_model
from .schedule import Schedule, epoch_to_step

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"
# Settings that may differ between a run and its resumption (they do not change the result).
RESUME_FREE = {"device", "threads", "workers", "eval_batch_size", "fail_at_step", "splits_path"}

Report = Callable[[dict[str, Any], Path], None]


class Diverged(Exception):
    """The loss became non-finite."""


@dataclass
class RunState:
    model: nn.Module
    heads: nn.ModuleDict
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    step: int = 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} but no GPU is visible; use --device cpu or auto")
    return dev


def set_threads(threads: int) -> int:
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


def step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    """Augmentation randomness of one step: a function of (seed, step) only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + salt)


def report_steps(cfg: TrainConfig, sched: Schedule) -> list[int]:
    """Steps (1-based counts of finished steps) after which we evaluate, report and checkpoint."""
    if cfg.eval_every > 0:
        n = int(math.floor(cfg.epochs / cfg.eval_every + 1e-9))
        epochs = [cfg.eval_every * i for i in range(1, n + 1)]
    else:
        epochs = [cfg.epochs * i / 10 for i in range(1, 11)]
    steps = {min(sched.total_steps, max(1, epoch_to_step(e, sched.steps_per_epoch))) for e in epochs}
    steps.add(sched.total_steps)
    return sorted(steps)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        out_dir: str | os.PathLike,
        report: Report | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.cfg = cfg
        self.out = Path(out_dir).resolve()
        self.report = report
        self.log = log or (lambda line: print(line, flush=True))
        self.device = resolve_device(cfg.device)
        self.threads = set_threads(cfg.threads)
        self.method = get_method(cfg.method)
        self.data: LoadedDataset = load_dataset(cfg.dataset, cfg.data_dir)
        self.spec = self.data.spec
        self.num_classes = len(self.data.classes)  # a class-subset ImageFolder has fewer
        self.splits = self._splits()
        self.source = make_source(
            self.data.train, self.spec, self.device, cfg.workers, cfg.skip_bad_images
        )
        self.test_source = (
            make_source(self.data.test, self.spec, self.device, cfg.workers, cfg.skip_bad_images)
            if self.data.test is not None
            else None
        )
        self.augment = Augmenter(self.spec, self.device, pre_cropped=self.source.pre_cropped)
        if self.device.type == "cuda" and cfg.channels_last:
            self.augment.memory_format = torch.channels_last
        self.schedule = Schedule.from_epochs(
            cfg.lr,
            cfg.batch_size,
            len(self.splits.labeled),
            cfg.epochs,
            cfg.warmup_epochs,
            cfg.resolved_decay_epochs(),
        )
        self.val_positions = {
            k: np.isin(self.splits.val, sub) for k, sub in self.splits.tiny.items()
        }

    # --- setup -------------------------------------------------------------------------
    def _splits(self) -> Splits:
        cfg = self.cfg
        if cfg.splits_path:
            return load_splits(cfg.splits_path)
        labels = self.data.train.labels.numpy()
        return splits_for(
            self.out,
            cfg.dataset,
            labels,
            self.num_classes,
            cfg.val_size or self.spec.default_val_size,
            cfg.labels,
            tuple(cfg.tiny_k),
            cfg.split_seed,
        )

    def autocast(self):
        if self.device.type == "cuda" and self.cfg.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def build(self) -> RunState:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        model = create_model(
            cfg.arch,
            width=cfg.width,
            num_classes=self.num_classes,
            image_size=self.spec.image_size,
            in_chans=self.spec.channels,
        )
        heads = nn.ModuleDict(
            {name: make(model.num_features, cfg) for name, make in self.method.heads.items()}
        )
        model.to(self.device)
        heads.to(self.device)
        if self.device.type == "cuda" and cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        params = list(model.parameters()) + list(heads.parameters())
        optimizer = torch.optim.SGD(
            params, lr=self.schedule.peak_lr, momentum=cfg.momentum, weight_decay=cfg.wd
        )
        return RunState(model, heads, optimizer, self.schedule.scheduler(optimizer))

    # --- checkpoints -------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.out / CHECKPOINT_DIR

    def save_checkpoint(self, state: RunState, history: list[dict]) -> Path:
        payload = {
            "model": state.model.state_dict(),
            "heads": state.heads.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "step": state.step,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "config": self.cfg.to_dict(),
            "history": history,
        }
        atomic_write(self.checkpoint_dir / CHECKPOINT_FILE, lambda tmp: torch.save(payload, tmp))
        return self.checkpoint_dir

    def load_checkpoint(self, state: RunState, path: str | os.PathLike) -> list[dict]:
        p = Path(path)
        if p.is_dir():
            p = p / CHECKPOINT_FILE
        if not p.is_file():
            raise UserError(f"no checkpoint at {p}; start a fresh run instead of resuming")
        # weights_only: a checkpoint is data, never code (security)
        payload = torch.load(p, map_location=self.device, weights_only=True)
        saved = payload["config"]
        now = self.cfg.to_dict()
        diff = sorted(k for k in now if k not in RESUME_FREE and saved.get(k) != now[k])
        if diff:
            raise UserError(
                f"the checkpoint in {p.parent} was made with other settings ({', '.join(diff)}); "
                "resume with the same settings or use another --out"
            )
        state.model.load_state_dict(payload["model"])
        state.heads.load_state_dict(payload["heads"])
        state.optimizer.load_state_dict(payload["optimizer"])
        state.scheduler.load_state_dict(payload["scheduler"])
        state.step = int(payload["step"])
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        return list(payload["history"])

    # --- evaluation --------------------------------------------------------------------
    def evaluate(self, model: nn.Module, final: bool) -> dict[str, float]:
        cfg = self.cfg
        top1, top5, labels = correctness(
            model,
            self.source.eval_batches(self.splits.val, cfg.eval_batch_size),
            self.augment,
            self.autocast,
        )
        metrics: dict[str, float] = {}
        for k, mask in self.val_positions.items():
            metrics.update(subset_metrics(f"val_{k}pc", top1, top5, mask))
        metrics.update(subset_metrics("val_full", top1, top5))
        if final:
            save_predictions(self.out, self.splits.val, labels, top1, top5)
            if self.test_source is not None:
                n_test = len(self.data.test)
                t1, t5, _ = correctness(
                    model,
                    self.test_source.eval_batches(np.arange(n_test), cfg.eval_batch_size),
                    self.augment,
                    self.autocast,
                )
                metrics.update(subset_metrics("test", t1, t5))
        return metrics

    # --- the loop ----------------------------------------------------------------------
    def run(self, resume_from: str | os.PathLike | None = None) -> dict[str, Any]:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "config.json", cfg.to_json())
        state = self.build()
        history: list[dict] = []
        if resume_from is not None:
            history = self.load_checkpoint(state, resume_from)
        start_step = state.step
        total = self.schedule.total_steps
        stops = [s for s in report_steps(cfg, self.schedule) if s > start_step]
        labeled_stream = IndexStream(self.splits.labeled, cfg.batch_size, cfg.seed, salt=0)
        unlabeled_stream = IndexStream(self.splits.train, cfg.batch_size, cfg.seed, salt=1)
        unlabeled_batches = (
            self.source.train_batches(unlabeled_stream, start_step, total)
            if self.method.uses_unlabeled
            else None
        )
        model, heads = state.model, state.heads
        run_model = torch.compile(model) if cfg.compile else model
        model.train()
        heads.train()
        t0 = time.perf_counter()
        eval_seconds = 0.0
        prior_seconds = history[-1]["train_seconds"] if history else 0.0
        loss_sum, loss_n = 0.0, 0
        metrics: dict[str, Any] = {}
        status, message = "completed", ""
        self.log(
            f"training {cfg.method} {cfg.arch} x{cfg.width:g} on {cfg.dataset} "
            f"({len(self.splits.labeled)} labeled, {len(self.splits.val)} val) for "
            f"{cfg.epochs:g} epochs = {total} steps of {cfg.batch_size} on {self.device}"
            + (f", resuming at step {start_step}" if start_step else "")
        )
        batches = self.source.train_batches(labeled_stream, start_step, total)
        try:
            for step in range(start_step, total):
                if step == cfg.fail_at_step and start_step == 0:
                    # fault injection (tests only): die like a killed process, once, in a
                    # fresh run; a resumed run passes this step normally
                    os._exit(17)
                images, labels = next(batches)
                labeled = Batch(images, labels)
                unlabeled = None
                if unlabeled_batches is not None:
                    ui, ul = next(unlabeled_batches)
                    unlabeled = Batch(ui, ul)
                ctx = StepContext(
                    cfg=cfg,
                    augment=self.augment,
                    gen=step_generator(cfg.seed, step),
                    num_classes=self.num_classes,
                    heads=heads,
                    autocast=self.autocast,
                )
                loss, parts = self.method.loss(run_model, labeled, unlabeled, ctx)
                if not torch.isfinite(loss):
                    raise Diverged(
                        f"loss became {loss.item()} at step {step} (epoch "
                        f"{self.schedule.epoch(step):.2f}); lower --lr or --wd, or lengthen "
                        "the warmup"
                    )
                state.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                state.optimizer.step()
                state.scheduler.step()
                state.step = step + 1
                loss_sum += float(loss.detach())
                loss_n += 1
                if stops and state.step == stops[0]:
                    stops.pop(0)
                    te = time.perf_counter()
                    final = state.step == total
                    metrics = self.evaluate(model, final=final)
                    eval_seconds += time.perf_counter() - te
                    metrics.update(
                        epoch=round(self.schedule.epoch(state.step), 4),
                        step=state.step,
                        total_steps=total,
                        lr=self.schedule.lr(state.step - 1),
                        train_loss=loss_sum / max(1, loss_n),
                        train_seconds=prior_seconds + time.perf_counter() - t0,
                    )
                    loss_sum, loss_n = 0.0, 0
                    history.append(metrics)
                    ckpt = self.save_checkpoint(state, history)
                    with open(self.out / "progress.jsonl", "a") as f:
                        f.write(json.dumps(metrics) + "\n")
                    self.log(self._progress_line(metrics))
                    if self.report is not None:
                        self.report(dict(metrics), ckpt)
        except Diverged as err:
            status, message = "diverged", str(err)
            self.log(f"diverged: {message}")
        final = {
            **{k: v for k, v in metrics.items() if k not in ("lr", "train_loss")},
            "status": status,
            "message": message,
            "epochs": round(self.schedule.epoch(state.step), 4),
            "steps": state.step,
            "total_steps": total,
            "train_seconds": prior_seconds + time.perf_counter() - t0,
            "eval_seconds": eval_seconds,
            "num_labeled": int(len(self.splits.labeled)),
            "num_val": int(len(self.splits.val)),
            "device": str(self.device),
            "threads": self.threads,
        }
        skipped = getattr(self.source, "skipped", 0)
        if skipped:
            final["skipped_images"] = skipped
        atomic_write_text(self.out / "metrics.json", json.dumps(final, indent=2))
        if status == "diverged" and self.report is not None:
            self.report({**final}, self.checkpoint_dir if self.checkpoint_dir.exists() else None)
        return final

    def _progress_line(self, m: dict[str, Any]) -> str:
        tiny = " ".join(f"{k}pc {m[f'val_{k}pc_top1']:.3f}" for k in self.splits.tiny)
        test = f" test {m['test_top1']:.3f}" if "test_top1" in m else ""
        return (
            f"epoch {m['epoch']:g}/{self.cfg.epochs:g} step {m['step']}/"
            f"{self.schedule.total_steps} loss {m['train_loss']:.4f} lr {m['lr']:.4g} | "
            f"val top1 full {m['val_full_top1']:.3f} {tiny}{test} | {m['train_seconds']:.1f}s"
        )


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    report: Report | None = None,
    resume_from: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train one configuration into `out_dir`; returns the final metrics (also metrics.json)."""
    return Trainer(cfg, out_dir, report=report, log=log).run(resume_from=resume_from)


__all__ = ["train", "Trainer", "TrainConfig", "DATASETS", "resolve_device", "report_steps"]
