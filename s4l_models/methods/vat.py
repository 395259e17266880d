"""Virtual Adversarial Training (Miyato et al. 2018; S4L Sections 3.2 and 4.2).

    L = w_sup * L_l + w_u * (w_vat * L_vat + w_entmin * L_entmin)
    L_vat    = mean_x KL( f(x) || f(x + r_adv) ) over the unlabeled batch, f(x) held constant
    L_entmin = mean_x H(f(x)) (only vat_entmin; plain vat refuses w_entmin > 0)

r_adv: one power-iteration step from a random direction d: the gradient of
KL(f(x) || f(x + xi d)) with respect to d approximates H d (H the KL's Hessian at r = 0), and
r_adv = eps_vat * g / ||g||_2 per example. eps_vat and xi are in 0-255 pixel units (the paper's
grid {50, ..., 25} is a distance in pixel space) and are converted to the model's input scale
channel by channel with `Augmenter.pixel_scale()`. The perturbed passes see the batch
statistics of their own batch (training-mode batch norm, as the paper's code), but they do not
update the running statistics (momentum 0 while they run, restored afterwards).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import to_device
from ..errors import UserError
from .base import Batch, Method, StepContext, entropy, readable

# (ours) Finite-difference step of the power iteration, in 0-255 pixel units: small against
# eps_vat (25-50) so that the quadratic approximation holds, large enough that the logit
# change stays well above float32 rounding. The power-iteration pass runs in float32 even
# under bf16 autocast, whose resolution is far coarser than this step.
XI_PIXELS = 0.1


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
    clean_logits: torch.Tensor,
    scale: torch.Tensor,
    gen: torch.Generator,
) -> torch.Tensor:
    """Unit-norm (per example, in pixel units) direction of largest KL growth: one power step."""
    d = to_device(torch.randn(x.shape, generator=gen), x.device, torch.float32)
    d = (XI_PIXELS * l2_normalize(d)).requires_grad_(True)
    target = clean_logits.detach()
    with frozen_bn_stats(model):
        logits = model(x.detach().float() + d * scale)
        kl = kl_from_logits(target, logits)
        (grad,) = torch.autograd.grad(kl, d)
    return l2_normalize(grad.detach())


def vat_perturbation(
    model: nn.Module, x: torch.Tensor, clean_logits: torch.Tensor, ctx: StepContext
) -> torch.Tensor:
    """r_adv in model-input units: ||r_adv / pixel_scale||_2 = eps_vat for every example."""
    scale = ctx.augment.pixel_scale().to(x.device)
    direction = adversarial_direction(model, x, clean_logits, scale, ctx.gen)
    return ctx.cfg.eps_vat * direction * scale


def vat_loss(
    model: nn.Module, x: torch.Tensor, clean_logits: torch.Tensor, ctx: StepContext
) -> torch.Tensor:
    """KL(f(x) || f(x + r_adv)) with f(x) held constant; no batch-norm statistics updated."""
    r_adv = vat_perturbation(model, x, clean_logits, ctx)
    with frozen_bn_stats(model), ctx.autocast():
        adv_logits = model(x.detach() + r_adv)
    return kl_from_logits(clean_logits.detach(), adv_logits)


def vat_entmin_loss(model, labeled: Batch, unlabeled: Batch | None, ctx: StepContext):
    unlabeled = readable(unlabeled)
    cfg = ctx.cfg
    xl = ctx.augment.train_view(labeled.images, ctx.gen, color=cfg.color_aug)
    xu = ctx.augment.train_view(unlabeled.images, ctx.gen, color=cfg.color_aug)
    with ctx.autocast():
        logits = model(torch.cat([xl, xu])).float()
    logits_l, logits_u = logits[: xl.shape[0]], logits[xl.shape[0] :]
    loss_sup = F.cross_entropy(logits_l, labeled.labels, ignore_index=-1)
    loss_vat = vat_loss(model, xu, logits_u, ctx)
    loss_ent = entropy(logits_u)
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
