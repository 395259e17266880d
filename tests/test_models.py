"""Tests for s4l_models.resnet: layout against torchvision, shapes, width, registry, v1 vs v2."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from s4l_models.errors import UserError
from s4l_models.resnet import ResNet, create_model, list_models, parse_arch


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv_params(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))


def _on_meta(fn, *args, **kwargs):
    # Meta tensors have shapes but no storage: counting parameters of ResNet-152 costs nothing.
    with torch.device("meta"):
        return fn(*args, **kwargs)


@pytest.mark.parametrize(
    "depth,expected",
    [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032), (101, 44_549_160), (152, 60_192_808)],
)
def test_v1_param_count_matches_torchvision(depth, expected):
    model = _on_meta(create_model, f"resnet{depth}_v1", num_classes=1000)
    assert _n_params(model) == expected


@pytest.mark.parametrize("depth", [18, 50])
def test_v1_state_dict_matches_torchvision_layout(depth):
    torchvision = pytest.importorskip("torchvision")
    ours = _on_meta(create_model, f"resnet{depth}_v1").state_dict()
    theirs = _on_meta(getattr(torchvision.models, f"resnet{depth}"), weights=None).state_dict()
    theirs = {k.replace("fc.", "head.", 1) if k.startswith("fc.") else k: v for k, v in theirs.items()}
    assert ours.keys() == theirs.keys()
    assert all(ours[k].shape == theirs[k].shape for k in ours)


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("name", list_models())
def test_tiny_forward_backward(name, in_chans):
    torch.manual_seed(0)
    model = create_model(name, width=0.25, num_classes=10, image_size=16, in_chans=in_chans)
    x = torch.randn(2, in_chans, 16, 16)
    feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features)
    logits = model(x)
    assert logits.shape == (2, 10)
    logits.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ["resnet18_v1", "resnet50_v2"])
def test_imagenet_stem_small_input(name):
    model = create_model(name, width=0.25, num_classes=5, image_size=96)
    assert isinstance(model.maxpool, nn.MaxPool2d) and model.conv1.kernel_size == (7, 7)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 96))
    assert out.shape == (2, 5)


def test_small_stem_has_no_maxpool():
    model = create_model("resnet18_v1", width=0.25, image_size=32)
    assert isinstance(model.maxpool, nn.Identity)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)


def test_width_scales_every_channel():
    base = _on_meta(create_model, "resnet18_v1")
    wide = _on_meta(create_model, "resnet18_v1", width=2)
    assert wide.conv1.out_channels == 128
    assert wide.num_features == 1024
    # Every conv's in and out channels double except the stem's 3 input channels.
    ratio = _conv_params(wide) / _conv_params(base)
    assert 3.95 < ratio <= 4.0
    wide50 = _on_meta(create_model, "resnet50_v2_x2")
    assert wide50.num_features == 4096
    assert wide50.layer1[0].conv1.out_channels == 128
    assert wide50.layer1[0].conv3.out_channels == 512


def test_fractional_width_rounds_channels():
    m = _on_meta(create_model, "resnet50_v1_x0.5")
    assert m.conv1.out_channels == 32 and m.num_features == 1024
    assert _on_meta(ResNet, 18, "v1", width=0.001).conv1.out_channels == 1


def test_parse_arch():
    assert parse_arch("resnet50_v2") == (50, "v2", None)
    assert parse_arch("resnet50_v2_x4") == (50, "v2", 4.0)
    assert parse_arch("resnet50_v1_x0.5") == (50, "v1", 0.5)
    assert _on_meta(create_model, "resnet18_v1_x4").arch_name == "resnet18_v1_x4"


def test_list_models():
    names = list_models()
    assert len(names) == 10
    assert names[0] == "resnet18_v1" and names[-1] == "resnet152_v2"
    assert "resnet50_v2" in names


def test_conflicting_width_is_user_error():
    with pytest.raises(UserError, match="conflicting"):
        create_model("resnet18_v1_x4", width=2)
    # Agreeing values are fine.
    assert _on_meta(create_model, "resnet18_v1_x2", width=2.0).width == 2.0


@pytest.mark.parametrize("bad", ["resnet7_v9", "resnet50_v3", "resnet50", "vit_b16", "resnet50_v2_x0"])
def test_unknown_name_is_user_error(bad):
    with pytest.raises(UserError) as info:
        parse_arch(bad)
    msg = str(info.value)
    assert "\n" not in msg
    if bad != "resnet50_v2_x0":
        assert "resnet50_v2" in msg and bad in msg


def test_v1_v2_structure_differs():
    v1 = create_model("resnet18_v1", width=0.25, num_classes=10, image_size=16)
    v2 = create_model("resnet18_v2", width=0.25, num_classes=10, image_size=16)
    assert isinstance(v1.bn1, nn.BatchNorm2d)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in (v2.bn1, v2.relu))
    assert isinstance(v2.final_norm, nn.BatchNorm2d) and isinstance(v1.final_norm, nn.Identity)
    # v2 projection shortcuts are bare convs; v1 ones are conv + BN.
    assert isinstance(v2.layer2[0].downsample, nn.Conv2d)
    assert isinstance(v1.layer2[0].downsample[1], nn.BatchNorm2d)
    # Pre-activation blocks end without a ReLU: stage outputs go negative, pooled features
    # (after the final BN+ReLU) do not.
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        stage = v2.layer4(v2.layer3(v2.layer2(v2.layer1(v2.conv1(x)))))
        feats = v2.forward_features(x)
    assert (stage < 0).any()
    assert (feats >= 0).all()


def test_default_create_model_signature():
    m = _on_meta(create_model, "resnet50_v1", num_classes=1000)
    assert m.arch_name == "resnet50_v1" and m.num_features == 2048 and not m.small_input
    assert m.head.out_features == 1000
