"""S4L-Exemplar (S4L Section 3.1): classification plus exemplar invariance.

Each image of the labeled and of the unlabeled batch becomes 8 copies, each its own inception
crop, flip where the dataset allows it, and HSV colour randomisation (the released
`crop_inception_patches(8,224)|hsvnoise|flip_lr`): in-memory datasets are cropped on the device
(`Augmenter.exemplar_view`); file-backed ones (ImageNet) arrive as 8 independent crops per image
from the DataLoader workers (`train_copies`, batches [B, 8, C, H, W]) and get their colour noise
on the device. All 16B copies go through the network in one forward pass. A linear embedding
head on the pre-logits (1000-d as in google-research/s4l config/s4l_exemplar.sh, L2-normalised
as in its semi_supervised/exemplar.py) feeds the batch-hard triplet loss with a soft margin
(Hermans et al. 2017): for every copy, the farthest copy of the same image is its positive and
the closest copy of another image its negative, loss softplus(d_pos - d_neg).

    L = w_sup * L_l + w_u * L_u
    L_l = cross-entropy of the class on all 8 copies of the labeled images
    L_u = mean of the triplet loss over the unlabeled copies and over the labeled copies
          (each computed within its own group, as the released code does)

Identities: the 8 copies of one image, as S4L Section 3.1 defines them. The released
semi_supervised/exemplar.py calls `do_triplet(emb, ninstances, nexamples)` against its signature
`(embeddings, nexamples, ninstances)`, so there B consecutive embeddings (B/8 images) share one
identity; its exemplar_ablation.py builds them per image. We read the swap as a bug and follow the
paper (README, "Where we differ from the paper or its released code").

An identity is a source image, not a batch slot: a batch that spans the end of one shuffled pass
and the start of the next (`IndexStream.batch`) can hold one image twice, which happens at most
steps with a small labeled set (150 labels at batch 64: 40% of 2,000 steps), and slot identities
would then push that image's copies apart as negatives of each other. The copies of every
occurrence of one dataset index (`Batch.indices`) therefore share one identity; a batch without
indices falls back to one identity per slot.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.augment import to_device
from .base import Batch, Method, StepContext, linear_head, readable
from .s4l_rotation import repeat_labels

NUM_COPIES = 8
EMBED_DIM = 1000
EMBED_HEAD = "embedding"


def exemplar_copies(images_u8: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    """8 independently augmented copies, copy-major: copy c*B + i is a view of image i.

    `images_u8` is [B, C, H, W] (every copy cropped on the device) or, from a file-backed
    source, [B, 8, C, H, W] of independent crops already made (copy c from crop c; only the
    colour noise and normalisation remain).
    """
    if images_u8.dim() == 5:
        if images_u8.shape[1] != NUM_COPIES:
            raise ValueError(
                f"expected {NUM_COPIES} crops per image, got batch of shape "
                f"{tuple(images_u8.shape)}"
            )
        views = images_u8.unbind(1)
    else:
        views = [images_u8] * NUM_COPIES
    return torch.cat([ctx.augment.exemplar_view(v, ctx.gen) for v in views])


def pairwise_distances(e: torch.Tensor) -> torch.Tensor:
    """Euclidean distances [N, N], with the square root kept differentiable at 0."""
    sq = (e * e).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * e @ e.t()
    return torch.sqrt(d2.clamp(min=1e-12))


def batch_hard_triplet(embeddings: torch.Tensor, identities: torch.Tensor) -> torch.Tensor:
    """Batch-hard triplet loss with soft margin, averaged over anchors.

    For anchor a: d_pos = max over b != a with the same identity of ||e_a - e_b||, d_neg = min
    over b with another identity; loss_a = softplus(d_pos - d_neg) = log(1 + exp(d_pos - d_neg)).
    """
    d = pairwise_distances(embeddings.float())
    same = identities[:, None] == identities[None, :]
    eye = torch.eye(len(identities), dtype=torch.bool, device=d.device)
    pos = d.masked_fill(~(same & ~eye), float("-inf")).amax(dim=1)
    neg = d.masked_fill(same, float("inf")).amin(dim=1)
    return F.softplus(pos - neg).mean()


def embed(feats: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    """L2-normalised embeddings in float32. The head runs under the step's autocast: with bf16
    autocast the features arrive in bf16 (batch norm and pooling keep it), which a float32
    linear layer outside autocast refuses."""
    with ctx.autocast():
        out = ctx.heads[EMBED_HEAD](feats)
    return F.normalize(out.float(), dim=1)


def image_identities(batch: Batch) -> torch.Tensor:
    """One identity per image of `batch` (CPU, int64): its dataset index (`Batch.indices`) or,
    for a batch that does not carry them, its slot."""
    if batch.indices is not None:
        return torch.as_tensor(batch.indices, dtype=torch.int64).cpu()
    return torch.arange(len(batch.labels))


def readable_identities(batch: Batch) -> tuple[Batch, torch.Tensor]:
    """`readable(batch)` and the identities (`image_identities`) of the images it keeps."""
    ids = image_identities(batch)
    kept = readable(batch)
    if kept is not batch:  # readable dropped the unreadable images (label -1): drop their ids
        ids = ids[(batch.labels >= 0).cpu()]
    return kept, ids


def triplet_of_copies(emb: torch.Tensor, identities: torch.Tensor) -> torch.Tensor:
    """The triplet loss of copy-major embeddings (copy c*B + i of image i) of B images whose
    identities are `identities` [B]: the copies of images with equal identities are positives
    of each other, whichever slots they came in."""
    ids = to_device(identities, emb.device).repeat(NUM_COPIES)
    return batch_hard_triplet(emb, ids)


def s4l_exemplar_loss(model, labeled: Batch, unlabeled: Batch | None, ctx: StepContext):
    # unreadable labeled images (label -1) stay: cross-entropy ignores them
    ids_l = image_identities(labeled)
    bl = labeled.images.shape[0]
    parts = [exemplar_copies(labeled.images, ctx)]
    bu = 0
    if unlabeled is not None:
        unlabeled, ids_u = readable_identities(unlabeled)
        if len(unlabeled.labels):
            bu = unlabeled.images.shape[0]
            parts.append(exemplar_copies(unlabeled.images, ctx))
    x = torch.cat(parts)
    with ctx.autocast():
        feats = model.forward_features(x)
        logits = model.head(feats[: NUM_COPIES * bl])
    emb = embed(feats, ctx)
    loss_sup = F.cross_entropy(
        logits.float(), repeat_labels(labeled.labels, NUM_COPIES), ignore_index=-1
    )
    triplets = [triplet_of_copies(emb[: NUM_COPIES * bl], ids_l)]
    if bu:
        triplets.append(triplet_of_copies(emb[NUM_COPIES * bl :], ids_u))
    loss_ex = torch.stack(triplets).mean()
    loss = ctx.cfg.w_sup * loss_sup + ctx.cfg.w_u * loss_ex
    return loss, {"loss_sup": loss_sup.detach(), "loss_exemplar": loss_ex.detach()}


METHOD = Method(
    name="s4l_exemplar",
    loss=s4l_exemplar_loss,
    uses_unlabeled=True,
    heads={EMBED_HEAD: linear_head(EMBED_DIM)},
    train_copies=NUM_COPIES,
)
