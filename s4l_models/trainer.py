"""The one trainer: any method of the registry, any dataset, CPU or CUDA, resumable.

`Trainer(cfg, out_dir, report=...).run()` runs the paper's recipe (SGD with momentum, linear warmup,
x0.1 step decays, epochs over the labeled data, lr scaled by batch/256) and returns the final
metrics. At every evaluation point it writes an atomic checkpoint (model, optimiser, schedule
position, RNG state) and calls `report(metrics, checkpoint_dir)`; Ray Tune's trainable passes a
callable that forwards both to `tune.report`, tests pass a plain function. Data order and
augmentation are functions of (seed, step), so resuming from a checkpoint reproduces the
uninterrupted run exactly on CPU.

Files in `out_dir`: config.json, splits.npz/json (unless `splits_path` points at shared ones),
checkpoint/state.pt, progress.jsonl (one line per evaluation), metrics.json (final) and
val_predictions.npz (per-example correctness of the final evaluation). The checkpoint is
written before its progress.jsonl line; a resumed run adds the lines its checkpoint's history
holds and progress.jsonl lacks (a kill between the two writes, or another machine).

Clocks (`CLOCKS`, in every evaluation's line and in metrics.json) run across resumes: a
resumed run starts them from its checkpoint's last line. A line's clocks stop at its
evaluation, so the writing of the checkpoint it is saved in counts from the next line on.

`s4l_models.run.train` is the entry point: it runs this loop, or for multi-stage methods
(pseudolabel, selfsup_linear, selfsup_finetune, moam) `s4l_models.stages.run_stages`, which
runs this same loop once per stage.

Polyak averaging (`polyak`, on for MOAM): an exponential moving average of the trainable
parameters with per-step decay 0.5 ** (1 / steps_per_epoch), so weights one epoch old count half;
batch-norm statistics are not averaged (the average model uses the live model's), as the
released code averages `tf.trainable_variables()` only. Evaluation, checkpoints and the next
stage's start use the average.

Weight decay applies to the convolution and linear kernels only, not to batch-norm scales and
offsets or biases: the released code puts an L2 regularizer on kernels only
(google-research/s4l models/resnet.py `kernel_regularizer`, utils.py `linear`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import (
    CHECKPOINT_DIR,
    CHECKPOINT_FILE,
    check_resumable,
    load_matching,
    load_weights,
    read_state,
    write_state,
)
from .config import TrainConfig
from .data.augment import Augmenter
from .data.datasets import DATASETS, LoadedDataset, load_dataset
from .data.sources import IndexStream, make_source
from .data.splits import (
    Splits,
    load_splits,
    meta_differences,
    split_request,
    splits_for,
)
from .errors import UserError
from .evaluate import (
    rotation_hits,
    rotations4,
    scored_examples,
    scoring_layout,
    subset_metrics,
)
from .io import atomic_write_text
from .methods import Batch, Method, StepContext, get_method
from .methods.base import polyak_for
from .methods.s4l_rotation import ROTATION_HEAD
from .predictions import save_predictions
from .resnet import create_model
from .schedule import Schedule, report_steps

PIPELINE_FILE = "pipeline.json"
# The training loss is summed on the device and looked at only every LOSS_CHECK_EVERY steps and
# at each evaluation: `if not isfinite(loss)` or float(loss) at every step would make the host
# wait for the GPU at every step. NaN and inf survive the sum, so a diverged run is still caught,
# at most LOSS_CHECK_EVERY steps late and always before its next evaluation or checkpoint.
LOSS_CHECK_EVERY = 50

Report = Callable[[dict[str, Any], Path], None]
# The run's clocks: wall time (`train_seconds`, with its evaluations, checkpoints and, for a
# multi-stage run, its pseudo-labelling passes), and the parts of it spent scoring and writing
# checkpoints; multi-stage runs sum them over their stages (s4l_models/stages.py)
CLOCKS = ("train_seconds", "eval_seconds", "checkpoint_seconds")


def finished_result(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The last evaluation of a run that already completed in `out_dir` (its metrics.json says
    completed and its progress.jsonl holds the final step), else None.

    A sweep whose driver was killed can restart a trial that had finished after Ray's last
    saved state; the trial then re-reports this instead of training again."""
    out = Path(out_dir)
    try:
        final = json.loads((out / "metrics.json").read_text())
        lines = (out / "progress.jsonl").read_text().splitlines()
        last = json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None
    if final.get("status") != "completed" or not last:
        return None
    if int(last.get("step", -1)) != int(final.get("steps", -2)):
        return None
    # the run's clocks (metrics.json): a multi-stage run's last line holds its last stage's
    return {**last, **{k: final[k] for k in CLOCKS if k in final}}


def _progress_key(d: dict) -> tuple[int, int]:
    return (int(d.get("stage", 0) or 0), int(d.get("step", 0) or 0))


def _progress_lines(path: Path) -> list[tuple[tuple[int, int], str]]:
    """(key, text) of each readable line of a progress.jsonl, in file order."""
    out = []
    if path.is_file():
        for text in path.read_text().splitlines():
            try:
                out.append((_progress_key(json.loads(text)), text))
            except (ValueError, TypeError, AttributeError):
                continue  # a torn line from an older, non-atomic writer
    return out


def record_progress(path: Path, line: dict[str, Any]) -> None:
    """Add one evaluation to a progress.jsonl, each evaluation once.

    A run resumed from its last checkpoint redoes the evaluations made after it (the process
    died between writing the line and its checkpoint reaching the sweep's storage): lines at
    or after the new one's (stage, step) are such stale copies and are dropped. The file is
    small (one line per evaluation) and rewritten atomically.
    """
    kept = [text for key, text in _progress_lines(path) if key < _progress_key(line)]
    kept.append(json.dumps(line))
    atomic_write_text(path, "\n".join(kept) + "\n")


def restore_progress(path: Path, lines: list[dict[str, Any]]) -> None:
    """Add to a progress.jsonl the evaluations of `lines` (a checkpoint's history) it lacks.

    A checkpoint's history is the complete record of the evaluations up to it, and a line is
    written after its checkpoint (a multi-stage run's top-level line in the report, which
    needs the checkpoint): a run killed between the two writes, or resumed into an empty
    directory (a trial of an object-store sweep restarted on another node), gets its lines
    back here. Lines already there, and later stale ones, stay as they are (record_progress
    replaces those when the run redoes their evaluations)."""
    have = _progress_lines(path)
    keys = {key for key, _ in have}
    new = [(_progress_key(d), json.dumps(d)) for d in lines if _progress_key(d) not in keys]
    if new:
        merged = sorted(have + new, key=lambda kt: kt[0])  # stable: file order among equals
        atomic_write_text(path, "\n".join(text for _, text in merged) + "\n")


class Diverged(Exception):
    """The loss became non-finite."""


def polyak_decay(steps_per_epoch: float) -> float:
    """Per-step decay under which the weight of parameters one epoch old is 0.5 (S4L Section 5)."""
    return 0.5 ** (1.0 / steps_per_epoch)


class Polyak:
    """Exponential moving average of a module's parameters.

    After every optimiser step: avg <- decay * avg + (1 - decay) * current for every parameter;
    buffers (batch-norm running statistics and step counters) are copied from the live module.
    """

    def __init__(self, module: nn.Module, decay: float):
        self.decay = float(decay)
        self.average = copy.deepcopy(module)
        for p in self.average.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        avg = list(self.average.parameters())
        cur = [p.detach() for p in module.parameters()]
        if avg:
            torch._foreach_lerp_(avg, cur, 1.0 - self.decay)
        for a, c in zip(self.average.buffers(), module.buffers()):
            a.copy_(c)


@dataclass
class RunState:
    model: nn.Module
    heads: nn.ModuleDict
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    step: int = 0
    polyak: Polyak | None = None  # averages nn.ModuleDict(model=..., heads=...)

    @property
    def eval_model(self) -> nn.Module:
        return self.polyak.average["model"] if self.polyak is not None else self.model

    @property
    def eval_heads(self) -> nn.ModuleDict:
        """The extra heads that go with eval_model (the Polyak copy averages them too)."""
        return self.polyak.average["heads"] if self.polyak is not None else self.heads

    def final_weights(self) -> dict[str, dict]:
        """The weights a later stage starts from: the Polyak average when there is one."""
        return {"model": self.eval_model.state_dict(), "heads": self.eval_heads.state_dict()}


def decay_groups(params: list[nn.Parameter], wd: float) -> list[dict[str, Any]]:
    """SGD parameter groups: weight decay on kernels (conv and linear weights, ndim > 1), none
    on batch-norm scales/offsets and biases. Each group says which it is (`decay`)."""
    kernels = [p for p in params if p.ndim > 1]
    others = [p for p in params if p.ndim <= 1]
    return [
        {"params": kernels, "weight_decay": wd, "decay": True},
        {"params": others, "weight_decay": 0.0, "decay": False},
    ]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} but no GPU is visible; use --device cpu or auto")
    return dev


def autocast_context(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when `amp` (the `amp` setting), else a no-op context."""
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_threads(threads: int) -> int:
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


def step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    """Augmentation randomness of one step: a function of (seed, step) only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + salt)


def resolve_splits(cfg: TrainConfig, out: Path, data: LoadedDataset) -> Splits:
    """The run's splits: the shared ones at `splits_path`, else made (or reused) in `out`."""
    if cfg.splits_path:
        # shared splits must be the ones this run's settings make: otherwise the run would
        # train and score on other subsets than its config.json (and the table) say
        saved = load_splits(cfg.splits_path)
        want = {**split_request(cfg.to_dict(), data.spec.default_val_size),
                "n_train_total": len(data.train)}
        diff = meta_differences(saved.meta, want)
        if diff:
            raise UserError(
                f"the splits at --splits-path {cfg.splits_path} were made with other settings "
                f"({', '.join(f'{k} {saved.meta.get(k)!r}, not {want[k]!r}' for k in diff)}); "
                "give the settings they were made with, or drop --splits-path"
            )
        return saved
    return splits_for(
        out,
        cfg.dataset,
        data.train.labels.numpy(),
        len(data.classes),
        cfg.val_size or data.spec.default_val_size,
        cfg.labels,
        tuple(cfg.tiny_k),
        cfg.split_seed,
    )


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        out_dir: str | os.PathLike,
        report: Report | None = None,
        log: Callable[[str], None] | None = None,
        *,
        method: Method | None = None,
        labeled: np.ndarray | None = None,
        train_labels: np.ndarray | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        init_weights: str | os.PathLike | None = None,
        checkpoint_extra: dict[str, Any] | None = None,
        short_reason: str | None = None,
    ):
        """One single-stage run. The keyword arguments are how `run_stages` runs a stage: another
        loss than cfg.method's, other indices for the "labeled" stream (e.g. the whole training
        split), labels overriding the dataset's for training (pseudo-labels; evaluation always
        uses the true labels), a shared checkpoint directory, the weights to start from and
        extra entries saved in state.pt, and (a multi-stage run) why the whole run is too short
        to mean anything when one of its stages is."""
        self.cfg = cfg
        self.out = Path(out_dir).resolve()
        self.report = report
        self.log = log or (lambda line: print(line, flush=True))
        self.device = resolve_device(cfg.device)
        self.eval_batch = cfg.eval_batch(self.device.type)
        if self.device.type == "cuda":
            # fixed input shapes: let cuDNN pick its fastest convolution algorithms once
            torch.backends.cudnn.benchmark = True
        self.threads = set_threads(cfg.threads)
        self.method = method or get_method(cfg.method)
        if self.method.stages is not None:
            raise ValueError(f"{self.method.name} has stages: train it with train()/run_stages")
        self.data: LoadedDataset = load_dataset(cfg.dataset, cfg.data_dir)
        self.spec = self.data.spec
        self.num_classes = len(self.data.classes)  # a class-subset ImageFolder has fewer
        self.splits = self._splits()
        self.labeled = self.splits.labeled if labeled is None else np.asarray(labeled, np.int64)
        self._checkpoint_dir = Path(checkpoint_dir).resolve() if checkpoint_dir else None
        self.init_weights = init_weights if init_weights is not None else cfg.init_from
        self.checkpoint_extra = dict(checkpoint_extra or {})
        self.polyak = polyak_for(self.method, cfg)
        train_data = self.data.train
        if train_labels is not None:
            train_data = dataclasses.replace(
                train_data, labels=torch.as_tensor(np.asarray(train_labels), dtype=torch.int64)
            )
        self.source = make_source(
            train_data,
            self.spec,
            self.device,
            cfg.workers,
            cfg.skip_bad_images,
            copies=self.method.train_copies,
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
            len(self.labeled),
            cfg.epochs,
            cfg.warmup_epochs,
            cfg.resolved_decay_epochs(),
        )
        self.val_positions = {
            k: np.isin(self.splits.val, sub) for k, sub in self.splits.tiny.items()
        }
        # A run too short to mean anything still trains (smoke runs and tests need it), but it
        # says so and every metric it reports carries short_run (MIN_STEPS in schedule.py).
        self.short_reason = short_reason or self.schedule.short_reason()
        # one that means something but not what its settings read: logged and in metrics.json
        self.schedule_warnings = self.schedule.warnings()

    # --- setup -------------------------------------------------------------------------
    def _splits(self) -> Splits:
        return resolve_splits(self.cfg, self.out, self.data)

    def autocast(self):
        return autocast_context(self.device, self.cfg.amp)

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
        if self.init_weights is not None:
            self._load_init(model, heads)
        if self.device.type == "cuda" and cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.method.trainable == "head":
            # linear evaluation: only the classifier learns; the features stay as they are
            for p in model.parameters():
                p.requires_grad_(False)
            for p in model.head.parameters():
                p.requires_grad_(True)
            params = list(model.head.parameters()) + list(heads.parameters())
        else:
            params = list(model.parameters()) + list(heads.parameters())
        optimizer = torch.optim.SGD(
            decay_groups(params, cfg.wd), lr=self.schedule.peak_lr, momentum=cfg.momentum
        )
        polyak = None
        if self.polyak:
            both = nn.ModuleDict({"model": model, "heads": heads})
            polyak = Polyak(both, polyak_decay(self.schedule.steps_per_epoch))
        return RunState(model, heads, optimizer, self.schedule.scheduler(optimizer), polyak=polyak)

    def _load_init(self, model: nn.Module, heads: nn.ModuleDict) -> None:
        w = load_weights(self.init_weights, self.device)
        missing = load_matching(model, w["model"])
        body = [k for k in missing if not k.startswith("head.")]
        if body:
            raise UserError(
                f"the weights in {self.init_weights} do not fit {self.cfg.arch} "
                f"x{self.cfg.width:g} (e.g. {body[0]}); start from a run of the same architecture"
            )
        load_matching(heads, w["heads"])

    # --- checkpoints -------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self._checkpoint_dir or self.out / CHECKPOINT_DIR

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
            **self.checkpoint_extra,
        }
        if state.polyak is not None:
            payload["polyak"] = state.polyak.average.state_dict()
        return write_state(self.checkpoint_dir, payload)

    def load_checkpoint(self, state: RunState, path: str | os.PathLike) -> list[dict]:
        p = Path(path)
        if p.is_dir():
            p = p / CHECKPOINT_FILE
        if not p.is_file():
            raise UserError(f"no checkpoint at {p}; start a fresh run instead of resuming")
        payload = read_state(p, self.device)
        check_resumable(payload["config"], self.cfg.to_dict(), p.parent)
        state.model.load_state_dict(payload["model"])
        state.heads.load_state_dict(payload["heads"])
        state.optimizer.load_state_dict(payload["optimizer"])
        state.scheduler.load_state_dict(payload["scheduler"])
        state.step = int(payload["step"])
        if state.polyak is not None:
            if not payload.get("polyak"):
                raise UserError(f"the checkpoint in {p.parent} holds no Polyak average")
            state.polyak.average.load_state_dict(payload["polyak"])
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        return list(payload["history"])

    # --- evaluation --------------------------------------------------------------------
    def evaluate(self, model: nn.Module, final: bool, state: RunState | None = None
                 ) -> dict[str, float]:
        """Score `model` on the validation split (and at the end the test split). `state`:
        the run, whose network and extra heads give the final rotation hits."""
        # on a CPU the scoring passes run with channels_last weights (faster with oneDNN)
        with scoring_layout(model, self.device.type == "cpu" and self.cfg.channels_last):
            return self._evaluate(model, final, state)

    def score(self, model: nn.Module, source, indices: np.ndarray, views=None) -> dict:
        """Per-example scores (evaluate.scored_examples) of `model` on `indices` of `source`."""
        batches = source.eval_batches(indices, self.eval_batch)
        return scored_examples(model, batches, self.augment, self.autocast, views=views)

    def _evaluate(self, model: nn.Module, final: bool, state: RunState | None = None
                  ) -> dict[str, float]:
        cfg = self.cfg
        val = self.splits.val
        scored = self.score(model, self.source, val)
        top1, top5, labels = scored["top1"], scored["topk"], scored["label"]
        metrics: dict[str, float] = {}
        for k, mask in self.val_positions.items():
            metrics.update(subset_metrics(f"val_{k}pc", top1, top5, mask, labels))
        metrics.update(subset_metrics("val_full", top1, top5, label=labels))
        if cfg.tta_rotation:
            # S4L Section 4.4: logits averaged over the four rotations (extra keys, *_rot4_*)
            rot4 = self.score(model, self.source, val, views=rotations4)
            for k, mask in self.val_positions.items():
                metrics.update(subset_metrics(f"val_{k}pc_rot4", rot4["top1"], rot4["topk"], mask,
                                              labels))
            metrics.update(subset_metrics("val_full_rot4", rot4["top1"], rot4["topk"],
                                          label=labels))
        if final:
            rot = None
            if state is not None and ROTATION_HEAD in state.heads:
                # label-free selection's signal (analysis/select.py), of the network the
                # metrics score: the Polyak average of the body and of its rotation head when
                # the run keeps one (Polyak averages the heads too), else the live network
                rot = rotation_hits(
                    state.eval_model, state.eval_heads[ROTATION_HEAD],
                    self.source.eval_batches(val, self.eval_batch),
                    self.augment, self.autocast,
                )
            save_predictions(self.out, val, labels, top1, top5,
                             scored["pred"], scored["conf"], rot)
            if self.test_source is not None:
                # the test split is scored once, at the end: selection never looks at it
                test = np.arange(len(self.data.test))
                t = self.score(model, self.test_source, test)
                metrics.update(subset_metrics("test", t["top1"], t["topk"], label=t["label"]))
                if cfg.tta_rotation:
                    t = self.score(model, self.test_source, test, views=rotations4)
                    metrics.update(subset_metrics("test_rot4", t["top1"], t["topk"],
                                                  label=t["label"]))
        return metrics

    # --- the loop ----------------------------------------------------------------------
    def run(self, resume_from: str | os.PathLike | None = None) -> dict[str, Any]:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "config.json", cfg.to_json())
        state = self.build()
        self.state = state
        history: list[dict] = []
        if resume_from is not None:
            history = self.load_checkpoint(state, resume_from)
            # lines lost to a kill after the checkpoint, or never here (another machine)
            restore_progress(self.out / "progress.jsonl", history)
        start_step = state.step
        total = self.schedule.total_steps
        stops = [s for s in report_steps(cfg, self.schedule) if s > start_step]
        labeled_stream = IndexStream(self.labeled, cfg.batch_size, cfg.seed, salt=0)
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
        eval_seconds = checkpoint_seconds = 0.0  # of this process (not of a resumed run)
        # the CLOCKS of the process(es) before a resume, as its checkpoint's last line has them
        prior = {k: history[-1].get(k, 0.0) if history else 0.0 for k in CLOCKS}
        prior_seconds, prior_eval = prior["train_seconds"], prior["eval_seconds"]
        loss_sum, loss_n, checked_step = torch.zeros((), device=self.device), 0, start_step
        metrics: dict[str, Any] = {}
        status, message = "completed", ""
        self.log(
            f"training {self.method.name} {cfg.arch} x{cfg.width:g} on {cfg.dataset} "
            f"({len(self.labeled)} labeled, {len(self.splits.val)} val) for "
            f"{cfg.epochs:g} epochs = {total} steps of {cfg.batch_size} on {self.device}"
            + (f", resuming at step {start_step}" if start_step else "")
        )
        if self.short_reason:
            self.log(
                f"warning: this run is too short to mean anything ({self.short_reason}); its "
                "metrics are marked short_run. Raise --epochs or lower --batch-size for at "
                "least 50 steps, most of them after the warmup, and end the warmup before "
                "the first lr decay"
            )
        for warning in self.schedule_warnings:
            self.log(f"warning: {warning}")
        batches = self.source.train_batches(labeled_stream, start_step, total)
        try:
            for step in range(start_step, total):
                images, labels = next(batches)
                # the images' dataset indices: S4L-Exemplar's triplet identities (a batch can
                # hold one image twice across two shuffled passes)
                labeled = Batch(images, labels, torch.from_numpy(labeled_stream.batch(step)))
                unlabeled = None
                if unlabeled_batches is not None:
                    ui, ul = next(unlabeled_batches)
                    unlabeled = Batch(ui, ul, torch.from_numpy(unlabeled_stream.batch(step)))
                ctx = StepContext(
                    cfg=cfg,
                    augment=self.augment,
                    gen=step_generator(cfg.seed, step),
                    num_classes=self.num_classes,
                    heads=heads,
                    autocast=self.autocast,
                )
                loss, parts = self.method.loss(run_model, labeled, unlabeled, ctx)
                state.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                state.optimizer.step()
                state.scheduler.step()
                if state.polyak is not None:
                    state.polyak.update(nn.ModuleDict({"model": model, "heads": heads}))
                state.step = step + 1
                loss_sum = loss_sum + loss.detach().float()
                loss_n += 1
                at_stop = bool(stops) and state.step == stops[0]
                if at_stop or state.step - checked_step >= LOSS_CHECK_EVERY:
                    self._check_finite(loss_sum, checked_step, state.step)
                    checked_step = state.step
                if at_stop:
                    stops.pop(0)
                    te = time.perf_counter()
                    final = state.step == total
                    metrics = self.evaluate(state.eval_model, final=final, state=state)
                    eval_seconds += time.perf_counter() - te
                    metrics.update(
                        epoch=round(self.schedule.epoch(state.step), 4),
                        step=state.step,
                        total_steps=total,
                        short_run=bool(self.short_reason),
                        lr=self.schedule.lr(state.step - 1),
                        train_loss=float(loss_sum) / max(1, loss_n),
                        train_seconds=prior_seconds + time.perf_counter() - t0,
                        eval_seconds=prior_eval + eval_seconds,
                        checkpoint_seconds=prior["checkpoint_seconds"] + checkpoint_seconds,
                    )
                    loss_sum, loss_n = torch.zeros((), device=self.device), 0
                    history.append(metrics)
                    tc = time.perf_counter()
                    ckpt = self.save_checkpoint(state, history)
                    record_progress(self.out / "progress.jsonl", metrics)
                    checkpoint_seconds += time.perf_counter() - tc
                    self.log(self._progress_line(metrics))
                    if self.report is not None:
                        self.report(dict(metrics), ckpt)
        except Diverged as err:
            status, message = "diverged", str(err)
            self.log(f"diverged: {message}")
        if start_step >= total and history:
            # resumed from the final checkpoint (e.g. a multi-stage run interrupted between
            # stages): score the finished model again so that the final files are written
            metrics = {**history[-1], **self.evaluate(state.eval_model, final=True, state=state)}
        final = {
            **{k: v for k, v in metrics.items() if k not in ("lr", "train_loss")},
            "status": status,
            "message": message,
            "epochs": round(self.schedule.epoch(state.step), 4),
            "steps": state.step,
            "total_steps": total,
            "warmup_steps": self.schedule.warmup_steps,
            "short_run": bool(self.short_reason),
            "short_reason": self.short_reason or "",
            "schedule_warnings": "; ".join(self.schedule_warnings),
            "train_seconds": prior_seconds + time.perf_counter() - t0,
            "eval_seconds": prior_eval + eval_seconds,
            "checkpoint_seconds": prior["checkpoint_seconds"] + checkpoint_seconds,
            "num_labeled": int(len(self.labeled)),
            "num_val": int(len(self.splits.val)),
            "device": str(self.device),
            "threads": self.threads,
        }
        # distinct unreadable files met (training, validation and test splits), each once
        skipped = sum(len(getattr(src, "skipped_files", ())) for src in (self.source,
                                                                         self.test_source))
        if skipped:
            final["skipped_images"] = skipped
        atomic_write_text(self.out / "metrics.json", json.dumps(final, indent=2))
        if status == "diverged" and self.report is not None:
            self.report({**final}, self.checkpoint_dir if self.checkpoint_dir.exists() else None)
        return final

    def _check_finite(self, loss_sum: torch.Tensor, after: int, upto: int) -> None:
        """Raise Diverged when a loss of steps (after, upto] was NaN or infinite (they sum)."""
        if not torch.isfinite(loss_sum):
            raise Diverged(
                f"loss became {float(loss_sum)} between steps {after + 1} and {upto} (epoch "
                f"{self.schedule.epoch(upto):.2f}); lower --lr or --wd, or lengthen the warmup"
            )

    def _progress_line(self, m: dict[str, Any]) -> str:
        tiny = " ".join(f"{k}pc {m[f'val_{k}pc_top1']:.3f}" for k in self.splits.tiny)
        test = f" test {m['test_top1']:.3f}" if "test_top1" in m else ""
        return (
            f"epoch {m['epoch']:g}/{self.cfg.epochs:g} step {m['step']}/"
            f"{self.schedule.total_steps} loss {m['train_loss']:.4f} lr {m['lr']:.4g} | "
            f"val top1 full {m['val_full_top1']:.3f} {tiny}{test} | {m['train_seconds']:.1f}s"
        )


__all__ = [
    "CLOCKS",
    "Trainer",
    "TrainConfig",
    "DATASETS",
    "Polyak",
    "polyak_decay",
    "resolve_device",
]
