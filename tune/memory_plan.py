"""Resource estimates of a trial, made before it runs: its worker's peak memory and the size of
its checkpoint. Nothing here allocates a network: models are built on torch's `meta` device.

`trial_memory_bytes(config, sizes)` is an upper-bound estimate of the peak resident memory of
the Ray worker process that trains one trial (the sweep asks Ray for it as the trial's `memory`
resource, so that Ray starts no more trials at a time than a node holds):

    peak = WORKER_BASELINE + STATE_FACTOR * state
           + max(ACTIVATION_FACTOR * train, EVAL_FACTOR * eval) + data
    state = weights + gradients + SGD momentum (+ the Polyak average, MOAM), float32
    train = the network's activations for one image (sum of every leaf module's output
            elements, traced on `meta`) x images one step holds in autograd at once x 4 bytes
    eval  = the largest input + output of one leaf module x the evaluation batch x 4 bytes
    data  = an in-memory dataset's uint8 images (twice: Ray's shared copy and the worker's)

and the whole is multiplied by MARGIN. "Images one step holds" is the batch size times the
method's GRAPH_COPIES (S4L-Rotation feeds 4 rotations of the labeled and of the unlabeled batch
through one pass: 8), the maximum over a multi-stage method's stages. The constants come from
`python bench/memory_calibration.py` (bench/results/memory_calibration.json): the peak RSS of
real trainer runs on digits (ResNet-18/50 v1/v2, widths 0.25-4, two batch sizes, supervised,
S4L-Rotation and VAT) and 32x32 images, and of Ray Tune workers.

`checkpoint_bytes(config)` is the size of the trainer's state.pt (weights, BN buffers, SGD
momentum, the Polyak average; multi-stage methods also keep their stage's starting weights).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from s4l_models.config import AUTO_EVAL_BATCH, TrainConfig
from s4l_models.errors import UserError
from tune.trainable import resolve_config

GIB = 2**30
MIB = 2**20
FLOAT_BYTES = 4  # float32 weights and activations (CPU training; bf16 autocast only on CUDA)

# --- calibration: python bench/memory_calibration.py (bench/results/memory_calibration.json):
# 31 trainer runs on digits and 32x32 images, fitted as
#   peak = baseline + s * state + max(a * train, e * eval) + data
# to within 6% for all runs but one (VAT on ResNet-50 v2, 10% above the fit).
# The baseline is a trial process before its network: Python, torch, Ray, the trainer, the data
# and the first step's kernels and allocator arenas (a Ray Tune worker measured no more).
WORKER_BASELINE_BYTES = 915 * MIB
STATE_FACTOR = 1.02  # weights, gradients, momentum (and the optimiser's temporaries)
ACTIVATION_FACTOR = 1.0  # of the summed leaf outputs: close to what autograd keeps
EVAL_FACTOR = 1.9  # of the largest leaf's input + output: what a no-grad pass holds at once
# Every estimate is the fit times this: above every measured run (the largest needed 1.10),
# about 15-20% above a typical one.
MARGIN = 1.15
# --- not calibrated (no such run on the development machine)
# A GPU trial keeps its network on the device; the host process holds the CUDA runtime and
# libraries instead (typically 1-2 GB resident), the dataset and checkpoint copies.
CUDA_HOST_BYTES = 2 * GIB
# One DataLoader worker of a file-backed dataset (ImageNet): a forked Python with torch, plus the
# two batches it prefetches (torch's default prefetch_factor).
LOADER_WORKER_BYTES = 300 * MIB
LOADER_PREFETCH = 2
# A stand-in trial (tests and bench/grid_scale.py: no network) needs only its worker.
STAND_IN_BYTES = 256 * MIB
# Per-tensor overhead of torch.save's zip format (header, name, 64-byte alignment) and the
# small entries of state.pt (config, history, RNG state), checked against real files by the
# benchmark.
CHECKPOINT_TENSOR_OVERHEAD = 160
CHECKPOINT_FIXED_BYTES = 64 * 1024

# Images per labeled image of the batch that one training step of a method holds in autograd at
# once (s4l_models/methods/): the step's peak activations are this many images' worth.
GRAPH_COPIES = {
    "supervised": 1,  # supervised.py: one pass over the labeled batch
    "s4l_rotation": 8,  # s4l_rotation.py: 4 rotations of the labeled and unlabeled batch, one pass
    "s4l_exemplar": 16,  # s4l_exemplar.py: 8 copies of the labeled and unlabeled batch, one pass
    # vat.py: the clean pass over labeled + unlabeled (2B) stays for the backward while the power
    # iteration's pass over 2B runs (freed by its autograd.grad), then the adversarial one's
    "vat": 4,
    "vat_entmin": 4,
    # moam.py step 1/2: rotation's 8B pass, then VAT's passes over the 4B unlabeled copies
    "rotation_vat_entmin": 12,
    "rotation_finetune": 4,  # moam.py step 3: rotations of the labeled batch only
    "rotation_pretext": 4,  # selfsup_linear.py: 4 rotations of the batch
    "exemplar_pretext": 8,  # selfsup_linear.py: 8 copies of the batch
    "linear_eval": 0,  # selfsup_linear.py: frozen features under no_grad (an evaluation-like pass)
}
# Settings that change a trial's memory or checkpoint (the others leave both alone).
MEMORY_SETTINGS = (
    "method", "dataset", "arch", "width", "batch_size", "pretrain_batch_size", "pretext",
    "eval_batch_size", "polyak", "workers", "device", "teacher",
)


@dataclass(frozen=True)
class NetFacts:
    """What one network (with a method's heads) costs, from a trace on the meta device."""

    params: int  # parameters of the model and the heads
    trainable: int  # of which the optimiser updates (gradients and momentum)
    buffer_bytes: int  # batch-norm running statistics and counters
    tensors: int  # entries of the state dicts (for torch.save's per-tensor overhead)
    train_elems: int  # sum over leaf modules of their output elements, one image
    eval_elems: int  # the largest input + output elements of one leaf module, one image


@functools.lru_cache(maxsize=1024)
def _backbone(arch: str, width: float, num_classes: int, image_size: int, channels: int):
    """(params, buffer_bytes, tensors, head params, num_features, train_elems, eval_elems)."""
    import torch

    from s4l_models.resnet import create_model

    with torch.device("meta"):
        model = create_model(arch, width=width, num_classes=num_classes, image_size=image_size,
                             in_chans=channels)
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    total, largest = [0], [0]

    def hook(module, inputs, output):
        size = output.numel()
        total[0] += size
        largest[0] = max(largest[0], size + sum(x.numel() for x in inputs if torch.is_tensor(x)))

    handles = [m.register_forward_hook(hook) for m in leaves]
    model.eval()  # the shapes are those of training; batch norm on one image needs eval mode
    with torch.no_grad():
        model(torch.empty(1, channels, image_size, image_size, device="meta"))
    for h in handles:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    tensors = len(model.state_dict())
    head = sum(p.numel() for p in model.head.parameters())
    return params, buffers, tensors, head, model.num_features, total[0], largest[0]


def net_facts(cfg, method) -> NetFacts:
    """The network of `cfg` with `method`'s heads (linear layers on the pre-logits)."""
    import torch

    from s4l_models.data.datasets import DATASETS

    spec = DATASETS[cfg.dataset]
    params, buffers, tensors, head, features, train, largest = _backbone(
        cfg.arch, float(cfg.width), spec.num_classes, spec.image_size, spec.channels
    )
    with torch.device("meta"):
        heads = [make(features, cfg) for make in method.heads.values()]
    extra = sum(p.numel() for h in heads for p in h.parameters())
    tensors += sum(len(h.state_dict()) for h in heads)
    trainable = head + extra if method.trainable == "head" else params + extra
    return NetFacts(params + extra, trainable, buffers, tensors, train, largest)


def _stages(cfg) -> list[tuple[Any, Any]]:
    """(method, settings) of each stage that trains (one for a single-stage method)."""
    from s4l_models.methods import get_method

    method = get_method(cfg.method)
    if method.stages is None:
        return [(method, cfg)]
    return [(s.method, s.cfg) for s in method.stages(cfg)]


def _config(config):
    if isinstance(config, TrainConfig):
        return config
    return TrainConfig.from_dict(dict(config))


def _images(cfg, sizes) -> int:
    """Images of the dataset (train split incl. validation, and test)."""
    from s4l_models.data.datasets import SYNTHETIC_SIZES

    if sizes is not None and (sizes.train or sizes.val):
        return int(sizes.train + sizes.val + sizes.test)
    return NOMINAL_IMAGES.get(cfg.dataset, SYNTHETIC_SIZES.get(cfg.dataset, 0))


# Images of each in-memory dataset (train + test), for plans made without reading the files.
NOMINAL_IMAGES = {"digits": 1797, "fashion_mnist": 70_000, "cifar10": 60_000, "cifar100": 60_000}


def data_bytes(cfg, sizes=None, batch: int | None = None, copies: int = 1) -> int:
    """Host memory for the data: an in-memory dataset's images (Ray's shared copy and the
    worker's), or a file-backed dataset's DataLoader workers with their prefetched batches."""
    from s4l_models.data.datasets import DATASETS

    spec = DATASETS[cfg.dataset]
    image = spec.channels * spec.image_size**2
    if spec.in_memory:
        return 2 * _images(cfg, sizes) * (image + 8)
    batch = cfg.batch_size if batch is None else batch
    return cfg.workers * (LOADER_WORKER_BYTES + LOADER_PREFETCH * batch * copies * image)


def _stage_terms(method, cfg) -> tuple[int, int, int]:
    """(state bytes, training activation bytes, evaluation activation bytes) of one stage."""
    from s4l_models.methods.base import polyak_for

    f = net_facts(cfg, method)
    weights = f.params * FLOAT_BYTES + f.buffer_bytes
    state = weights + 2 * f.trainable * FLOAT_BYTES  # + gradients + momentum
    if polyak_for(method, cfg):
        state += weights  # the averaged copy
    copies = GRAPH_COPIES.get(method.name, max(GRAPH_COPIES.values()))
    train = f.train_elems * copies * cfg.batch_size * FLOAT_BYTES
    # the automatic scoring batch is planned at its largest (a GPU's), an upper bound on a CPU
    eval_batch = cfg.eval_batch_size or max(AUTO_EVAL_BATCH.values())
    batch = eval_batch if copies else max(eval_batch, cfg.batch_size)
    evaluate = f.eval_elems * batch * FLOAT_BYTES
    return state, train, evaluate


def trial_memory_terms(config, sizes=None) -> dict[str, int]:
    """The estimate's parts for the stage that needs the most (the benchmark fits them)."""
    cfg = _config(config)
    best = None
    for method, scfg in _stages(cfg):
        state, train, evaluate = _stage_terms(method, scfg)
        copies = max(1, getattr(method, "train_copies", 1))
        terms = {"state": state, "train": train, "eval": evaluate,
                 "data": data_bytes(scfg, sizes, copies=copies)}
        if best is None or _fitted(terms) > _fitted(best):
            best = terms
    return best


def _fitted(terms: Mapping[str, int], gpu: bool = False) -> float:
    if gpu:  # the network lives on the device; the host keeps the runtime and the data
        return WORKER_BASELINE_BYTES + CUDA_HOST_BYTES + terms["state"] + terms["data"]
    return (
        WORKER_BASELINE_BYTES
        + STATE_FACTOR * terms["state"]
        + max(ACTIVATION_FACTOR * terms["train"], EVAL_FACTOR * terms["eval"])
        + terms["data"]
    )


def trial_memory_bytes(resolved_config, sizes=None, gpu: bool = False) -> int:
    """Estimated peak resident memory (bytes) of the worker that trains this trial, on the
    host; `gpu`: the trial trains on a GPU (its network and activations live there)."""
    return math.ceil(MARGIN * _fitted(trial_memory_terms(resolved_config, sizes), gpu))


def checkpoint_bytes(resolved_config) -> int:
    """Estimated size of the trial's checkpoint (the trainer's state.pt, and for a multi-stage
    method the stage's starting weights kept beside it); the largest over the stages."""
    from s4l_models.methods.base import polyak_for

    cfg = _config(resolved_config)
    largest = 0
    for i, (method, scfg) in enumerate(_stages(cfg)):
        f = net_facts(scfg, method)
        weights = f.params * FLOAT_BYTES + f.buffer_bytes
        size = weights + f.trainable * FLOAT_BYTES  # + momentum
        tensors = f.tensors + (f.trainable and 1) * f.tensors  # momentum: about one per tensor
        if polyak_for(method, scfg):
            size += weights
            tensors += f.tensors
        if i > 0:  # a later stage keeps the weights it started from
            size += weights
            tensors += f.tensors
        largest = max(largest, size + tensors * CHECKPOINT_TENSOR_OVERHEAD)
    return largest + CHECKPOINT_FIXED_BYTES


def ray_request(need: int) -> int:
    """A trial's `memory` request: its need rounded up to REQUEST_STEP, so that trials of about
    the same size ask alike and Ray Tune reuses their workers (it does only for equal requests)."""
    return int(math.ceil(need / REQUEST_STEP) * REQUEST_STEP)


REQUEST_STEP = 256 * MIB


def trial_need(config: Mapping[str, Any], setup: Mapping[str, Any], sizes=None,
               gpu: bool = False) -> int:
    """Estimated memory of a sweep's trial from its Ray Tune config (the axis values, encoded)
    and the sweep's setup (tune/trainable.py): a stand-in trial needs only its worker."""
    if setup.get("stand_in"):
        return STAND_IN_BYTES
    try:
        cfg = TrainConfig.from_dict(resolve_config(dict(config), dict(setup)))
    except Exception:  # the trial itself reports what is wrong with its settings
        return WORKER_BASELINE_BYTES
    return trial_memory_bytes(cfg, sizes, gpu)


def trial_resources(config: Mapping[str, Any], setup: Mapping[str, Any], sizes=None,
                    cpus: float = 1.0, gpus: float = 0.0) -> dict[str, float]:
    """The Ray resources of one trial (what `tune.with_resources` calls with its config):
    CPUs, GPUs and its estimated memory (Ray's `memory` resource, in bytes)."""
    need = trial_need(config, setup, sizes, gpus > 0)
    return {"cpu": cpus, "gpu": gpus, "memory": ray_request(need)}


# --- plans ----------------------------------------------------------------------------------
# Grids are scanned for their largest trials on at most this many points (the memory axes'
# combinations; a larger product is sampled).
SCAN_LIMIT = 4096


def memory_points(plan) -> list[dict]:
    """Points of the plan that differ in what sets a trial's memory: the planned points, or
    every combination of the memory axes' values (the other axes at their first value)."""
    if plan.points is not None:
        points = plan.points
    else:
        axes = plan.space.axes
        if not axes:
            return [{}]
        first = plan.space.point_at(0)
        keys = [a.key for a in axes if a.key in MEMORY_SETTINGS]
        values = [next(a.values for a in axes if a.key == k) for k in keys]
        combos = itertools.islice(itertools.product(*values), SCAN_LIMIT)
        points = [{**first, **dict(zip(keys, combo))} for combo in combos]
    seen, out = set(), []
    for point in points:
        key = tuple(repr(point.get(k)) for k in MEMORY_SETTINGS)
        if key not in seen:
            seen.add(key)
            out.append(point)
    return out


def trial_label(cfg) -> dict[str, Any]:
    """The settings that name a trial's size (method, network, batch)."""
    label = {"method": cfg.method, "arch": cfg.arch, "width": float(cfg.width),
             "batch_size": cfg.batch_size}
    if cfg.method.startswith("selfsup"):
        label["pretrain_batch_size"] = cfg.pretrain_batch_size
    return label


def largest_trials(plan, n: int = 3, gpu: bool = False) -> list[tuple[int, int, dict]]:
    """The n planned trials that need the most memory: (memory bytes, checkpoint bytes, the
    settings that name the trial's size), largest first."""
    rows = []
    for point in memory_points(plan):
        cfg = TrainConfig.from_dict(plan.trial_config(point))
        rows.append((trial_memory_bytes(cfg, plan.sizes, gpu), checkpoint_bytes(cfg),
                     trial_label(cfg)))
    rows.sort(key=lambda r: r[0], reverse=True)
    return rows[:n]


def largest_checkpoint(plan) -> int:
    return max(
        (checkpoint_bytes(TrainConfig.from_dict(plan.trial_config(p))) for p in memory_points(plan)),
        default=0,
    )


# Copies of a running trial's checkpoint on disk at the moment it reports: the trainer's
# state.pt, Ray's new copy and Ray's previous one (deleted once the new one is registered).
COPIES_WHILE_REPORTING = 3
# A trial's own small files (config, progress, metrics, log, Ray's bookkeeping), plus its
# bit-packed predictions (2 bits per validation image); the trainer's on digits are ~9 KB
# (bench/results/memory_calibration.json, run_files_bytes).
TRIAL_FILES_BYTES = 16 * 1024


def disk_peak_bytes(plan, concurrency: int, keep_all: bool = False) -> tuple[int, int, int]:
    """(checkpoints at the peak, the largest checkpoint, the sweep's other files) in bytes.
    Assumes finished trials' checkpoints are removed as they finish, except the best one's
    (every one with --keep-checkpoints)."""
    largest = largest_checkpoint(plan)
    running = max(1, min(concurrency, plan.num_trials))
    kept = plan.num_trials if keep_all else 1
    val = plan.sizes.val if plan.sizes is not None else 0
    files = plan.num_trials * (TRIAL_FILES_BYTES + val // 4)
    return largest * (COPIES_WHILE_REPORTING * running + kept), largest, files


def format_point(point: Mapping[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in point.items()) or "the fixed settings"


def gib(n: float) -> str:
    """Bytes for people: 31.6 GiB, 1.24 GiB, 830 MiB, 380 KiB."""
    if n >= GIB:
        return f"{n / GIB:.{1 if n >= 10 * GIB else 2}f} GiB"
    return f"{n / MIB:.0f} MiB" if n >= MIB else f"{n / 1024:.0f} KiB"


# Ray's default for a node it starts: 30% of the available memory for its object store, the
# rest for tasks and actors (ray/_private/resource_and_label_spec.py).
RAY_TRIAL_SHARE = 0.7


def machine_memory() -> int:
    """Physical memory of this machine (bytes)."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def local_trial_memory() -> int:
    """What a Ray started here gives tasks and actors, about (its `memory` resource)."""
    return int(RAY_TRIAL_SHARE * machine_memory())


def local_where() -> str:
    """How check_fits names this machine's limit."""
    return (f"a Ray started here gives trials ({RAY_TRIAL_SHARE:.0%} of this machine's "
            f"{gib(machine_memory())})")


def memory_lines(plan, concurrency: int, gpu: bool = False, keep_all: bool = False,
                 largest=None, local: bool = True) -> list[str]:
    """The --dry-run lines: the largest trials' memory (against what a Ray started here gives
    trials when `local`; a cluster's nodes are checked when the sweep starts) and the
    checkpoints' peak disk."""
    largest = largest if largest is not None else largest_trials(plan, 3, gpu)
    if not largest:
        return []
    at_once = max(1, min(concurrency, plan.num_trials))
    tops = "; ".join(f"{gib(need)} ({format_point(point)})" for need, _, point in largest)
    line = (f"memory per trial (estimated, tune/memory_plan.py; the largest {len(largest)}): "
            f"{tops}; {at_once} at a time need up to {gib(at_once * largest[0][0])}")
    if local:
        limit = local_trial_memory()
        fits = max(1, limit // ray_request(largest[0][0]))
        line += f" of the {gib(limit)} a Ray started here gives trials" + (
            f" (it runs at most {fits} of the largest at a time)" if fits < at_once else ""
        )
    else:
        line += " (checked against the cluster's nodes when the sweep starts)"
    peak, ckpt, files = disk_peak_bytes(plan, concurrency, keep_all)
    kept = "every finished trial's (--keep-checkpoints)" if keep_all else "the best finished trial's"
    return [line, (
        f"checkpoint disk at the peak: about {gib(peak)} (largest checkpoint {gib(ckpt)}; "
        f"{COPIES_WHILE_REPORTING} per running trial while it reports, {at_once} running, plus "
        f"{kept}; finished trials' others removed as they finish), plus about {gib(files)} of "
        "tables, predictions and logs"
    )]


def check_fits(plan, limit: int, where: str, gpu: bool = False, largest=None) -> None:
    """UserError (one line with the fix) when a planned trial needs more than `limit` bytes."""
    largest = largest if largest is not None else largest_trials(plan, 1, gpu)
    if not largest or largest[0][0] <= limit:
        return
    need, _, point = largest[0]
    raise UserError(
        f"the trial {format_point(point)} needs about {gib(need)} of memory (tune/memory_plan.py's "
        f"estimate), more than {where}: {gib(limit)}; lower its batch_size or "
        "width with --set (e.g. --set batch_size=...), or run on a bigger node (--address)"
    )


__all__ = [
    "trial_memory_bytes", "checkpoint_bytes", "trial_memory_terms", "trial_need",
    "trial_resources", "largest_trials", "memory_lines", "check_fits", "ray_request",
    "local_trial_memory", "machine_memory", "GRAPH_COPIES",
]
