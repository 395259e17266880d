"""Virtual Adversarial Training (Miyato et al. 2018; S4L Sections 3.2 and 4.2).

What is computed (`vat`; `vat_entmin` is the same loss with w_entmin > 0 allowed):

    L = w_sup * L_l + w_u * (w_vat * L_vat + w_entmin * L_entmin)
    L_vat    = mean_x KL( f(x + r_adv) || f(x) ),  f(x) held constant (no gradient)
    L_entmin = mean_x H(f(x))

The batch x: the clean augmented views of one training forward pass. With `vat_on_labeled`
(default, the released code's `--apply_vat_to_labeled` in config/vat.sh and vat_entmin.sh) x is
the labeled and the unlabeled batch together (labeled images that could not be read left out),
else the unlabeled batch only; L_vat and L_entmin both average over that batch, as the released
semi_supervised/vat.py does. f(x) are the logits of that same training pass. MOAM (moam.py)
calls `vat_loss` on the rotated unlabeled copies only, as the released rotation_vat.py does.

KL direction. The paper writes KL(f(x) || f(x + r)); the released code (vat.py, rotation_vat.py,
vat_utils.py) computes `kl_divergence_from_logits(f(x + r), stop_gradient(f(x)))`, i.e.
KL(f(x + r) || f(x)), both in the power iteration and in the loss. We follow the released code,
whose runs produced the paper's numbers. The two agree to second order in r (same Hessian at
r = 0) but not at the eps used, and their gradients differ (here the gradient also flows through
the weights p(y | x + r)).

Units. eps_vat is the L2 norm, over all pixels and channels of one example, of r_adv measured in
[-1, 1] image units (x_uint8 / 127.5 - 1: the released preprocessing `-1_to_1`, in which its
--vat_eps 40 (vat.sh, vat_entmin.sh) and 32 (moam_step_1.sh) are applied). The paper calls it
"a distance in pixel space" and tries {50, 50·2^-1/3, 50·2^-2/3, 25} on ImageNet (224x224x3),
where 40 means an RMS change of 40 / sqrt(150528) = 0.10, i.e. 13 levels of 0-255, per pixel.
Our inputs are (x / 255 - mean) / std per channel, so one [-1, 1] unit is
127.5 * `Augmenter.pixel_scale()` = 0.5 / std model units: r_adv = eps_vat * u * 0.5 / std with
u of unit norm in [-1, 1] units. `cfg.eps_vat` None means the recipe's ImageNet value scaled to
the dataset: `default_eps(dataset)` = 40 * `DatasetSpec.vat_eps_scale` (MOAM: 32 * scale), the
scale following the paper's rule "below half the distance between neighbouring images"
(bench/vat_eps_heuristic.py).

r_adv: one power-iteration step from a random normal direction d of norm xi (in [-1, 1] units):
u = g / ||g||_2 per example, with g the gradient of KL(f(x + xi d) || f(x)) with respect to d,
which approximates H d (H the KL's Hessian at r = 0). Two (ours) departures from the released
vat_utils.py, both so that g is H d and not float32 rounding noise. The evidence is in
bench/vat_eps_heuristic.py (`power_iteration`: cosine between u and the exact float64 H d for
the same d, fresh ResNet-18/50 v2 on digits, Fashion-MNIST, 32x32 and 224x224 inputs) and
tests/test_vat.py guards it:

- xi = 1e-3 instead of 1e-6. In float32 a perturbation of L2 norm 1e-6 moves each input by
  ~1e-7 to 3e-9 (64 to 150528 inputs), at or below the rounding of inputs of size ~1: the
  median cosine to H d was -0.07 to 0.30, against 0.99 to 1.00 with xi = 1e-3 (1e-4 gave 0.68
  at 224x224; 1e-1 gave 0.56 to 0.89, where the quadratic approximation no longer holds).
- The reference f(x) of the power iteration must come from a pass identical to the perturbed
  one but for d: float32, over the same batch (batch-norm statistics are per batch). The
  training pass's logits qualify only for `vat`/`vat_entmin` with `vat_on_labeled`, every
  labeled image readable and no bf16 autocast (float32 logits), and are reused then, as the
  released code does. Otherwise (bf16 on CUDA, `vat_on_labeled` false, MOAM's 4B unlabeled
  copies out of a pass over 8B) the power iteration runs its own gradient-free float32 pass
  over x: logits from a bf16 pass or from other batch statistics differ from f(x + xi d) by far
  more than xi moves it, and the median cosine to H d was then -0.15 to 0.07 for every
  xi <= 1e-3 (bench/vat_eps_heuristic.py, `power_iteration`). The extra forward (no backward)
  made a digits step (batch 64 + 64, ResNet-18 v2 x0.25, 1 CPU thread) ~12% slower.

Batch norm: the perturbed and reference passes normalise with their own batch statistics
(training mode, as the released code) but do not update the running statistics (momentum 0
while they run, restored afterwards; the released code sets momentum 1.0 in TF terms).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import Augmenter, to_device
from ..errors import UserError
from ..recipes import VAT_10, scale_eps
from .base import Batch, Method, StepContext, entropy, readable

# The VAT recipe's eps in ImageNet units (config/vat.sh, vat_entmin.sh: --vat_eps 40 in [-1, 1]
# units; S4L §4.2: eps_vat ≈ 40 worked best), read from s4l_models/recipes.py.
IMAGENET_EPS = VAT_10.settings["eps_vat"]

# (ours) Finite-difference step of the power iteration, L2 norm in [-1, 1] image units (the
# released vat_utils.py uses 1e-6, which float32 cannot resolve: see the module docstring).
XI = 1e-3


def default_eps(dataset: str, imagenet_eps: float = IMAGENET_EPS) -> float:
    """The recipe's eps_vat for `dataset`: its ImageNet value times the dataset's scale."""
    return scale_eps(imagenet_eps, dataset)


def eps_for(cfg, imagenet_eps: float = IMAGENET_EPS) -> float:
    """cfg.eps_vat when set, else the recipe's value for cfg.dataset ([-1, 1] image units)."""
    return float(cfg.eps_vat) if cfg.eps_vat is not None else default_eps(cfg.dataset, imagenet_eps)


def unit_scale(augment: Augmenter) -> torch.Tensor:
    """One [-1, 1] image unit (127.5 levels of 0-255) in model-input units, per channel."""
    return 127.5 * augment.pixel_scale()


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module):
    """Batch norm layers normalise with their batch statistics but leave the running ones alone."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            tracked = m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None
            saved.append((m, m.momentum, tracked))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def l2_normalize(d: torch.Tensor) -> torch.Tensor:
    """Each example scaled to unit L2 norm over all its pixels."""
    norm = d.flatten(1).norm(dim=1).clamp(min=1e-12)
    return d / norm.view(-1, *([1] * (d.dim() - 1)))


def kl_from_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(softmax(p) || softmax(q))."""
    logp = torch.log_softmax(p_logits.float(), dim=1)
    logq = torch.log_softmax(q_logits.float(), dim=1)
    return (logp.exp() * (logp - logq)).sum(dim=1).mean()


def adversarial_direction(
    model: nn.Module,
    x: torch.Tensor,
    unit: torch.Tensor,
    gen: torch.Generator,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unit-norm direction per example, in [-1, 1] image units: one power-iteration step.

    `unit` is one [-1, 1] unit in model-input units (per channel); the passes run in float32
    whatever autocast the caller uses, with frozen batch-norm statistics. `reference`: f(x)
    from a float32 training-mode pass over exactly this batch, or None to compute it here.
    """
    x = x.detach().float()
    if reference is None:
        with torch.no_grad(), frozen_bn_stats(model):
            reference = model(x)
    reference = reference.detach().float()
    d = to_device(torch.randn(x.shape, generator=gen), x.device, torch.float32)
    d = (XI * l2_normalize(d)).requires_grad_(True)
    with frozen_bn_stats(model):
        logits = model(x + d * unit)
        # KL(f(x + d) || f(x)) summed over the batch (the released code takes the mean: the
        # same direction, as each example is normalised on its own)
        kl = kl_from_logits(logits, reference) * x.shape[0]
        (grad,) = torch.autograd.grad(kl, d)
    return l2_normalize(grad.detach())


def vat_perturbation(
    model: nn.Module,
    x: torch.Tensor,
    ctx: StepContext,
    imagenet_eps: float = IMAGENET_EPS,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    """r_adv in model-input units; its L2 norm in [-1, 1] image units is eps for every example
    (eps: cfg.eps_vat, or `default_eps(cfg.dataset, imagenet_eps)` when that is None)."""
    unit = unit_scale(ctx.augment).to(x.device)
    direction = adversarial_direction(model, x, unit, ctx.gen, reference)
    return eps_for(ctx.cfg, imagenet_eps) * direction * unit


def vat_loss(
    model: nn.Module,
    x: torch.Tensor,
    clean_logits: torch.Tensor,
    ctx: StepContext,
    imagenet_eps: float = IMAGENET_EPS,
    exact_pass: bool = False,
) -> torch.Tensor:
    """Mean over x of KL(f(x + r_adv) || f(x)), f(x) = clean_logits held constant (the released
    code's direction); the perturbed passes update no batch-norm statistics. `exact_pass`: the
    clean logits come from a float32 pass over exactly x, so the power iteration reuses them."""
    reference = clean_logits if exact_pass else None
    r_adv = vat_perturbation(model, x, ctx, imagenet_eps, reference)
    with frozen_bn_stats(model), ctx.autocast():
        adv_logits = model(x.detach() + r_adv)
    return kl_from_logits(adv_logits, clean_logits.detach())


def vat_entmin_loss(model, labeled: Batch, unlabeled: Batch | None, ctx: StepContext):
    unlabeled = readable(unlabeled)
    cfg = ctx.cfg
    xl = ctx.augment.train_view(labeled.images, ctx.gen, color=cfg.color_aug)
    xu = ctx.augment.train_view(unlabeled.images, ctx.gen, color=cfg.color_aug)
    x = torch.cat([xl, xu])
    with ctx.autocast():
        logits = model(x)
    exact_pass = logits.dtype == torch.float32  # no bf16 autocast
    logits = logits.float()
    logits_l, logits_u = logits[: xl.shape[0]], logits[xl.shape[0] :]
    loss_sup = F.cross_entropy(logits_l, labeled.labels, ignore_index=-1)
    if cfg.vat_on_labeled:
        # released vat.py with --apply_vat_to_labeled: VAT and EntMin on labeled + unlabeled
        keep = labeled.labels >= 0
        if bool(keep.all()):
            x_vat, logits_vat = x, logits
        else:
            exact_pass = False  # the training pass also saw the unreadable images
            x_vat = torch.cat([xl[keep], xu])
            logits_vat = torch.cat([logits_l[keep], logits_u])
    else:
        exact_pass = False
        x_vat, logits_vat = xu, logits_u
    loss_vat = vat_loss(model, x_vat, logits_vat, ctx, exact_pass=exact_pass)
    loss_ent = entropy(logits_vat)
    loss_u = cfg.w_vat * loss_vat + cfg.w_entmin * loss_ent
    loss = cfg.w_sup * loss_sup + cfg.w_u * loss_u
    return loss, {
        "loss_sup": loss_sup.detach(),
        "loss_vat": loss_vat.detach(),
        "loss_entmin": loss_ent.detach(),
    }


def _validate(cfg) -> None:
    if cfg.w_entmin > 0:
        raise UserError(
            f"--method vat has no entropy term but w_entmin is {cfg.w_entmin:g}; use --method "
            "vat_entmin or set w_entmin 0"
        )


METHOD = Method(name="vat", loss=vat_entmin_loss, uses_unlabeled=True, validate=_validate)
