"""The methods' losses against independent references written here: rotations, the batch-hard
triplet loss, VAT's perturbation, EntMin, Polyak's decay and MOAM's 20-view pseudo-labels."""

from __future__ import annotations

import contextlib
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from s4l_models.config import TrainConfig
from s4l_models.data.augment import Augmenter
from s4l_models.data.datasets import DATASETS
from s4l_models.errors import UserError
from s4l_models.evaluate import five_crop_rot4, pseudo_labels, view_average
from s4l_models.methods import PAPER_METHODS, get_method, list_methods, s4l_exemplar
from s4l_models.methods.base import Batch, StepContext, entropy
from s4l_models.methods.s4l_exemplar import EMBED_HEAD, NUM_COPIES, batch_hard_triplet
from s4l_models.methods.s4l_rotation import rotate4, rotated_class_loss
from s4l_models.methods.vat import (
    kl_from_logits,
    unit_scale,
    vat_loss,
    vat_perturbation,
)
from s4l_models.resnet import create_model
from s4l_models.trainer import Polyak, polyak_decay

torch.set_num_threads(1)


def _model(channels=3, size=8, classes=10, seed=0):
    torch.manual_seed(seed)
    return create_model("resnet18_v1", width=0.25, num_classes=classes, image_size=size,
                        in_chans=channels)


def _ctx(cfg=None, spec=DATASETS["cifar10"], seed=0):
    return StepContext(
        cfg=cfg or TrainConfig(),
        augment=Augmenter(spec, torch.device("cpu")),
        gen=torch.Generator().manual_seed(seed),
        num_classes=spec.num_classes,
        heads=nn.ModuleDict(),
        autocast=contextlib.nullcontext,
    )


def test_every_paper_method_is_available_by_name():
    assert list_methods() == list(PAPER_METHODS)
    for name in PAPER_METHODS:
        assert get_method(name).name == name


def test_rotated_copies_equal_torch_rot90_and_labels_match():
    x = torch.randn(5, 3, 6, 6)
    copies, labels = rotate4(x)
    assert copies.shape == (20, 3, 6, 6)
    assert labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    for k in range(4):
        for i in range(5):
            assert torch.equal(copies[k * 5 + i], torch.rot90(x[i], k, dims=(1, 2)))
    # 90 degrees counter-clockwise: the top row becomes the left column, read bottom-up
    assert torch.equal(copies[5, 0, :, 0], x[0, 0, 0, :].flip(0))


def test_classification_on_rotated_copies_or_upright_ones_only():
    logits = torch.randn(12, 10, generator=torch.Generator().manual_seed(8))
    labels = torch.tensor([3, 1, 4])
    on_all = rotated_class_loss(logits, labels.repeat(4), _ctx(TrainConfig()))
    assert on_all.item() == pytest.approx(F.cross_entropy(logits, labels.repeat(4)).item())
    upright = rotated_class_loss(logits, labels.repeat(4), _ctx(TrainConfig(sup_on_rotated=False)))
    assert upright.item() == pytest.approx(F.cross_entropy(logits[:3], labels).item())


def _brute_force_triplet(emb, ids):
    n = len(ids)
    total = 0.0
    for a in range(n):
        dist = [math.dist(emb[a].tolist(), emb[b].tolist()) for b in range(n)]
        pos = max(dist[b] for b in range(n) if b != a and ids[b] == ids[a])
        neg = min(dist[b] for b in range(n) if ids[b] != ids[a])
        total += math.log1p(math.exp(pos - neg))
    return total / n


@pytest.mark.parametrize("normalise", [False, True])
def test_batch_hard_soft_margin_triplet_equals_brute_force(normalise):
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(24, 7, generator=g, dtype=torch.float64)
    if normalise:
        emb = F.normalize(emb, dim=1)
    ids = torch.arange(3).repeat(8)  # 8 copies of 3 images, copy-major as the method builds them
    got = batch_hard_triplet(emb, ids).item()
    assert got == pytest.approx(_brute_force_triplet(emb, ids.tolist()), rel=1e-6)


def test_an_image_drawn_twice_in_one_batch_keeps_its_copies_as_one_identity(monkeypatch):
    """A batch spanning two shuffled passes holds one image twice (IndexStream.batch); the
    copies of both occurrences are positives of each other, never negatives."""
    import numpy as np

    from s4l_models.data.sources import IndexStream

    stream = IndexStream(np.arange(3), batch_size=4, seed=0)
    idx = stream.batch(0)  # 3 images of pass 0, then the first of pass 1
    assert len(set(idx.tolist())) == 3
    twice = [i for i in range(4) if idx[i] == idx[3]]
    assert twice == [twice[0], 3]
    g = torch.Generator().manual_seed(5)
    pool = torch.randint(0, 256, (3, 1, 8, 8), generator=g, dtype=torch.uint8)  # digits
    labeled = Batch(pool[idx], torch.tensor([1, 2, 3, 4]), torch.from_numpy(idx))
    # an unlabeled batch with the same image twice and an unreadable one between them
    unlabeled = Batch(pool[[0, 1, 0, 2]], torch.tensor([0, -1, 0, 0]), torch.tensor([7, 8, 7, 9]))
    seen = []

    def spy(emb, identities):
        seen.append((emb.detach(), identities))
        return batch_hard_triplet(emb, identities)

    monkeypatch.setattr(s4l_exemplar, "batch_hard_triplet", spy)
    model = _model(channels=1)
    ctx = _ctx(TrainConfig(method="s4l_exemplar"), spec=DATASETS["digits"])
    ctx.heads[EMBED_HEAD] = s4l_exemplar.METHOD.heads[EMBED_HEAD](model.num_features, ctx.cfg)
    _, parts = s4l_exemplar.s4l_exemplar_loss(model, labeled, unlabeled, ctx)
    (emb_l, ids_l), (emb_u, ids_u) = seen
    slots_l = torch.arange(4).repeat(NUM_COPIES)
    copies_l = slots_l[ids_l == ids_l[3]].tolist()  # every copy sharing slot 3's identity
    assert sorted(set(copies_l)) == [twice[0], 3] and len(copies_l) == 2 * NUM_COPIES
    assert len(set(ids_l.tolist())) == 3
    # the unreadable image is dropped with its identity: images 7, 7, 9 are left
    assert ids_u.tolist() == [7, 7, 9] * NUM_COPIES
    loss_l = _brute_force_triplet(emb_l.double(), ids_l.tolist())
    loss_u = _brute_force_triplet(emb_u.double(), ids_u.tolist())
    assert parts["loss_exemplar"].item() == pytest.approx((loss_l + loss_u) / 2, rel=1e-4)
    # one identity per slot instead would make the two occurrences negatives of each other
    assert _brute_force_triplet(emb_l.double(), slots_l.tolist()) != pytest.approx(loss_l)


def test_entmin_equals_the_entropy_formula():
    logits = torch.randn(9, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    total = 0.0
    for row in logits.tolist():
        z = sum(math.exp(v) for v in row)
        total -= sum(math.exp(v) / z * math.log(math.exp(v) / z) for v in row)
    assert entropy(logits).item() == pytest.approx(total / 9, rel=1e-6)


def _bn_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "tracked" in k}


def test_vat_perturbation_has_norm_eps_in_minus_one_to_one_units_and_beats_a_random_direction():
    spec = DATASETS["cifar10"]
    cfg = TrainConfig(dataset="cifar10", eps_vat=2.0)  # [-1, 1] units over 8x8x3 inputs
    ctx = _ctx(cfg, spec)
    model = _model(channels=3, size=8)
    model.train()
    x = ctx.augment.normalize(torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(5)))
    with torch.no_grad():
        model(x)  # the clean pass updates batch norm once, as in training
    before = _bn_buffers(model)
    r = vat_perturbation(model, x, ctx)
    # back from model units ((x/255 - mean)/std) to [-1, 1] units (x/127.5 - 1)
    in_unit_range = r * (2.0 * torch.tensor(spec.std).view(1, -1, 1, 1))
    assert torch.allclose(in_unit_range, r / unit_scale(ctx.augment))
    norms = in_unit_range.flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, 2.0), rtol=1e-4)
    # adversarial passes leave batch-norm statistics untouched
    after = _bn_buffers(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # same norm, random direction
    rand = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
    rand = rand / rand.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * 2.0 * unit_scale(ctx.augment)
    model.eval()  # score both with the same (running) statistics
    with torch.no_grad():
        ref = model(x)
        kl_adv = kl_from_logits(model(x + r), ref).item()
        kl_rand = kl_from_logits(model(x + rand), ref).item()
    assert kl_adv > kl_rand


def test_vat_loss_sends_no_gradient_through_the_target():
    ctx = _ctx(TrainConfig(dataset="cifar10", eps_vat=1.5))
    model = _model()
    x = ctx.augment.normalize(torch.rand(6, 3, 8, 8))
    clean = model(x).detach().requires_grad_(True)  # a leaf: any gradient would land here
    loss = vat_loss(model, x, clean, ctx)
    loss.backward()
    assert clean.grad is None  # f(x) is a constant target
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("steps_per_epoch", [7, 2.5])
def test_polyak_gives_weight_one_half_to_parameters_one_epoch_old(steps_per_epoch):
    decay = polyak_decay(steps_per_epoch)
    assert decay ** steps_per_epoch == pytest.approx(0.5)
    if steps_per_epoch == 7:
        net = nn.Linear(3, 2)
        with torch.no_grad():
            net.weight.fill_(1.0)
            net.bias.fill_(1.0)
        avg = Polyak(net, decay)
        with torch.no_grad():
            net.weight.zero_()
            net.bias.zero_()
        for _ in range(7):  # one epoch of steps with the new value 0
            avg.update(net)
        assert torch.allclose(avg.average.weight, torch.full((2, 3), 0.5))
        assert torch.allclose(avg.average.bias, torch.full((2,), 0.5))
        assert net.weight.sum() == 0  # the live weights are untouched


def _reference_views(img, fraction=0.75):
    """Crops by slicing (4 corners + centre), resized back, each rotated 4 times: 20 views."""
    c, h, w = img.shape
    ch, cw = round(h * fraction), round(w * fraction)
    top, left = int(round((h - ch) / 2)), int(round((w - cw) / 2))
    boxes = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), (top, left)]
    views = []
    for y, x in boxes:
        crop = img[:, y : y + ch, x : x + cw][None]
        crop = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0]
        views.extend(torch.rot90(crop, k, dims=(1, 2)) for k in range(4))
    return views


def test_pseudo_labels_average_the_predictions_of_20_views():
    spec = DATASETS["digits"]
    aug = Augmenter(spec, torch.device("cpu"))
    model = _model(channels=1, size=8).eval()
    u8 = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8,
                       generator=torch.Generator().manual_seed(7))
    x = aug.eval_view(u8)
    with torch.no_grad():
        got = view_average(model, x, five_crop_rot4)
        # the released code averages logits (pseudo_labeling/generate_labels.py), then softmax
        ref = torch.stack([
            torch.softmax(
                torch.stack([model(v[None])[0] for v in _reference_views(img)]).mean(0), dim=0
            )
            for img in x
        ])
    assert got.shape == (6, 10)
    # batched vs one view at a time: 1.5e-8 apart with 1 or 2 threads, the top two classes
    # of each image >= 0.012 apart, so neither the tolerance nor the argmax below is near what
    # another BLAS's rounding could move
    assert torch.allclose(got, ref, atol=1e-5)
    labels = torch.zeros(6, dtype=torch.long)
    pred, conf = pseudo_labels(model, [(u8, labels)], aug, views=five_crop_rot4)
    assert pred.tolist() == ref.argmax(1).tolist()
    assert conf == pytest.approx(ref.max(1).values.numpy(), abs=1e-5)
    assert len({tuple(v.flatten().tolist()) for v in _reference_views(x[0])}) == 20  # distinct



def test_pseudo_label_retraining_keeps_the_true_labels_of_the_labeled_images(tmp_path):
    """As the released code trains (datasets.py, label_flag): the teacher's predictions label
    the unlabeled images only; a labeled image keeps its label even where the teacher is
    wrong, and the confidence threshold never drops it."""
    import numpy as np

    from s4l_models.data.datasets import load_dataset
    from s4l_models.stages import _pseudo_inputs

    data = load_dataset("digits", None)
    true = data.train.labels.numpy()
    index = np.arange(20)
    labeled = np.array([0, 1, 2, 3])
    label = (true[index] + 1) % 10  # the teacher is wrong everywhere
    conf = np.where(index % 2 == 0, 0.9, 0.3)  # images 0, 2, 4, ... confident
    path = tmp_path / "pseudo.npz"
    np.savez(path, index=index, label=label, confidence=conf)
    kept, labels, wrong = _pseudo_inputs(
        TrainConfig(method="pseudolabel", pseudo_threshold=0.5), data, path, labeled
    )
    assert wrong == 4
    assert (labels[labeled] == true[labeled]).all()
    unl = index[4:]
    assert (labels[unl] == (true[unl] + 1) % 10).all()
    assert kept.tolist() == [0, 1, 2, 3] + [i for i in range(4, 20) if i % 2 == 0]
    with pytest.raises(UserError, match="unlabeled image reaches pseudo_threshold 0.95"):
        _pseudo_inputs(TrainConfig(method="pseudolabel", pseudo_threshold=0.95), data, path,
                       labeled)


BAD = {
    "moam with an exemplar pretext": (dict(method="moam", pretext="exemplar"), "--pretext"),
    "vat with entropy weight": (dict(method="vat", w_entmin=0.3), "vat_entmin"),
    "teacher for a non-pseudolabel method": (dict(method="s4l_rotation", teacher="x"), "--teacher"),
    "threshold for supervised": (dict(pseudo_threshold=0.5), "pseudo_threshold"),
    "rotation averaging without rotations": (
        dict(method="vat", tta_rotation=True),
        "--tta-rotation",
    ),
    "init_from for a staged method": (dict(method="selfsup_linear", init_from="x"), "--init-from"),
    "negative w_sup": (dict(w_sup=-1), "w_sup"),
    "upright-only loss without rotations": (dict(sup_on_rotated=False), "sup_on_rotated"),
    "VAT on unlabeled only for moam": (dict(method="moam", vat_on_labeled=False), "vat_on_labeled"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_incompatible_settings_are_one_line_user_errors(case):
    values, needle = BAD[case]
    with pytest.raises(UserError, match=needle) as err:
        TrainConfig.from_dict(values)
    assert "\n" not in str(err.value)


def test_moam_defaults_to_polyak_and_scales_its_later_steps():
    cfg = TrainConfig.from_dict(dict(method="moam", epochs=200))
    s1, s2, s3 = get_method("moam").stages(cfg)
    assert [s.name for s in (s1, s2, s3)] == ["step1", "step2", "step3"]
    assert s1.cfg.polyak and s2.cfg.polyak and s3.cfg.polyak
    assert s2.cfg.epochs == 18 and s2.cfg.decay_epochs == (6, 12) and s2.data == "all"
    assert s2.labels == "pseudo" and s2.pseudo_views == "5crop_rot4" and s2.init
    assert s3.cfg.epochs == 20 and s3.cfg.decay_epochs == (5, 10, 15) and s3.cfg.wd == 3e-3
    half = get_method("moam").stages(TrainConfig.from_dict(dict(method="moam", epochs=100)))
    assert half[1].cfg.epochs == 9 and half[2].cfg.epochs == 10
    assert list(itertools.chain(*(s.cfg.decay_epochs for s in half[1:]))) == [3, 6, 2.5, 5, 7.5]


def test_train_help_gives_the_recipe_as_the_default_of_every_setting_a_method_changes():
    """`s4l-train --help` must not promise TrainConfig's default where a run gets its method's
    recipe instead (`--method vat`: w_u 0.5, lr 0.03; moam: width 4, batch 128, ...)."""
    from dataclasses import fields

    from s4l_models.cli import build_parser
    from s4l_models.recipes import RECIPES

    helps = {a.dest: a.help for a in build_parser()._actions}
    plain = TrainConfig()
    changed = set()
    for method in RECIPES:
        for labels in ("10%", "1%"):
            cfg = TrainConfig.from_dict({"method": method, "labels": labels})
            changed |= {f.name for f in fields(TrainConfig)
                        if getattr(cfg, f.name) != getattr(plain, f.name)}
    changed -= {"method", "labels"}  # given, not defaulted
    assert {"lr", "w_u", "width", "batch_size", "w_sup"} <= changed
    for f in fields(TrainConfig):
        default = str(getattr(plain, f.name)).replace("%", "%%")
        if f.name in changed:
            assert helps[f.name] == (
                f"(default: the method's recipe, s4l_models/recipes.py; else {default})"
            ), f.name
        elif "recipe" not in helps[f.name]:
            assert helps[f.name] == f"(default {default})", f.name
    assert helps["pretrain_epochs"] == "(default 35.0)"  # no recipe sets it


def _every_stage_loss():
    """(id, method of the stage, its settings) for each stage of every method, both pretexts of
    the self-supervised ones."""
    from s4l_models.methods.base import Stage

    cases = []
    for name in PAPER_METHODS:
        for pretext in ("rotation", "exemplar") if name.startswith("selfsup") else (None,):
            values = {"method": name, "dataset": "digits", "batch_size": 8, "width": 0.125}
            if pretext:
                values["pretext"] = pretext
            c = TrainConfig.from_dict(values)
            method = get_method(name)
            stages = method.stages(c) if method.stages is not None else [Stage(name, method, c)]
            for st in stages:
                cases.append((f"{name}-{st.name}" + (f"-{pretext}" if pretext else ""),
                              st.method, st.cfg))
    return cases


STAGE_LOSSES = _every_stage_loss()


@pytest.mark.parametrize("case", STAGE_LOSSES, ids=[c[0] for c in STAGE_LOSSES])
def test_every_stage_loss_takes_a_step_under_bf16_autocast(case):
    """Mixed precision (bf16 autocast, `amp`, the CUDA default) stood in for by CPU autocast to
    bf16, which keeps bf16 through the same ops (batch norm, pooling) and casts linear layers:
    S4L-Exemplar's embedding head outside autocast failed every GPU run this way."""
    _, method, c = case
    spec = DATASETS["digits"]
    model = _model(channels=spec.channels, size=spec.image_size, classes=spec.num_classes)
    heads = nn.ModuleDict({k: build(model.num_features, c) for k, build in method.heads.items()})
    ctx = StepContext(cfg=c, augment=Augmenter(spec, torch.device("cpu")),
                      gen=torch.Generator().manual_seed(0), num_classes=spec.num_classes,
                      heads=heads, autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, spec.channels, spec.image_size, spec.image_size),
                           dtype=torch.uint8, generator=g)
    labeled = Batch(images, torch.arange(8) % 10, torch.arange(8))
    unlabeled = Batch(images.flip(0), torch.arange(8) % 10, torch.arange(8, 16))
    loss, _ = method.loss(model, labeled, unlabeled if method.uses_unlabeled else None, ctx)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    grads = [p.grad for p in [*model.parameters(), *heads.parameters()] if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
