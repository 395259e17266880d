"""ResNet v1 and v2 (pre-activation) backbones with a width multiplier, plus a tiny registry.

S4L (Zhai et al., ICCV 2019) trains ResNet-50 v1 and v2 at several widths and attaches extra
heads (rotation classifier, embedding) to the pre-logits. We keep our own implementation
because torchvision has no pre-activation ResNet and its `width_per_group` only widens the
3x3 convs of bottlenecks, while the paper's width multiplier scales *every* channel count
(stem, all stages, bottleneck outputs).

At width 1 the v1 layout (module names included) is torchvision's "v1.5" ResNet: stride on the
bottleneck's 3x3 conv, projection shortcut = 1x1 conv + BN. Only the classifier is called
`head` instead of `fc`, so parameter counts equal torchvision's and a torchvision state dict
loads after renaming `fc.*` to `head.*`.

Registry names are `resnet{18,34,50,101,152}_{v1,v2}` with an optional width suffix `_xW`
(e.g. `resnet50_v2_x4`, `resnet50_v1_x0.5`).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from .errors import UserError

# depth -> (uses bottleneck blocks, blocks per stage)
_DEPTHS: dict[int, tuple[bool, tuple[int, int, int, int]]] = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
}
_VERSIONS = ("v1", "v2")
_STAGE_PLANES = (64, 128, 256, 512)
_STEM_CHANNELS = 64
_BOTTLENECK_EXPANSION = 4
# Inputs larger than this get the ImageNet stem (7x7/2 conv + 3x3/2 max-pool); smaller inputs
# (8x8 .. 64x64, e.g. digits, CIFAR) would be downsampled 4x before the first stage and lose
# most of their spatial extent, so they get a 3x3 stride-1 conv and no pooling.
_SMALL_INPUT_MAX = 64


def scale_channels(channels: int, width: float) -> int:
    """Channel count `channels` scaled by the width multiplier, at least 1."""
    return max(1, int(round(channels * width)))


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


# --------------------------------------------------------------------------------------------
# v1: post-activation blocks (He et al. 2015), laid out exactly like torchvision.models.resnet
# --------------------------------------------------------------------------------------------


class BasicBlockV1(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, add shortcut, ReLU."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(in_ch, mid_ch, stride)
        self.bn1 = nn.BatchNorm2d(mid_ch)
        self.conv2 = _conv3x3(mid_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(_conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class BottleneckV1(nn.Module):
    """conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1-BN, add shortcut, ReLU ("v1.5")."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv1x1(in_ch, mid_ch)
        self.bn1 = nn.BatchNorm2d(mid_ch)
        # Stride on the 3x3 conv (torchvision "v1.5"), not on the first 1x1 as in the original
        # paper: a strided 1x1 conv would simply drop 3/4 of the activations.
        self.conv2 = _conv3x3(mid_ch, mid_ch, stride)
        self.bn2 = nn.BatchNorm2d(mid_ch)
        self.conv3 = _conv1x1(mid_ch, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(_conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


# --------------------------------------------------------------------------------------------
# v2: pre-activation blocks (He et al. 2016, "Identity mappings in deep residual networks")
# --------------------------------------------------------------------------------------------


class BasicBlockV2(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3, add shortcut; no activation after the addition."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = _conv3x3(in_ch, mid_ch, stride)
        self.bn2 = nn.BatchNorm2d(mid_ch)
        self.conv2 = _conv3x3(mid_ch, out_ch)
        self.relu = nn.ReLU(inplace=True)
        # The projection is a bare conv: the paper's identity-mapping argument keeps the
        # shortcut path free of normalisation and activation.
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = _conv1x1(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Not in-place: an identity shortcut still needs the raw `x`.
        preact = torch.relu(self.bn1(x))
        # A projection shortcut sees the pre-activated input (as in the paper's reference
        # code), an identity shortcut the raw input.
        shortcut = x if self.downsample is None else self.downsample(preact)
        out = self.conv1(preact)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + shortcut


class BottleneckV2(nn.Module):
    """BN-ReLU-conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1, add shortcut."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = _conv1x1(in_ch, mid_ch)
        self.bn2 = nn.BatchNorm2d(mid_ch)
        self.conv2 = _conv3x3(mid_ch, mid_ch, stride)
        self.bn3 = nn.BatchNorm2d(mid_ch)
        self.conv3 = _conv1x1(mid_ch, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = _conv1x1(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = torch.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(preact)
        out = self.conv1(preact)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + shortcut


_BLOCKS = {
    ("v1", False): BasicBlockV1,
    ("v1", True): BottleneckV1,
    ("v2", False): BasicBlockV2,
    ("v2", True): BottleneckV2,
}


class ResNet(nn.Module):
    """ResNet-{18,34,50,101,152}, v1 (post-activation) or v2 (pre-activation).

    `width` multiplies every channel count. `forward_features` returns the globally pooled
    pre-logits [B, num_features]; `forward` applies the linear `head` to them.
    """

    def __init__(
        self,
        depth: int = 50,
        version: str = "v1",
        width: float = 1.0,
        num_classes: int = 1000,
        image_size: int = 224,
        in_chans: int = 3,
    ):
        super().__init__()
        if depth not in _DEPTHS:
            raise UserError(f"unsupported ResNet depth {depth}; choose one of {sorted(_DEPTHS)}")
        if version not in _VERSIONS:
            raise UserError(f"unsupported ResNet version {version!r}; choose v1 or v2")
        if not width > 0:
            raise UserError(f"ResNet width must be positive, got {width}")
        if num_classes < 1 or in_chans < 1 or image_size < 1:
            raise UserError(
                f"num_classes, in_chans and image_size must be positive, "
                f"got {num_classes}, {in_chans}, {image_size}"
            )
        self.depth, self.version, self.width = depth, version, float(width)
        self.small_input = image_size <= _SMALL_INPUT_MAX
        suffix = "" if self.width == 1.0 else f"_x{self.width:g}"
        self.arch_name = f"resnet{depth}_{version}{suffix}"

        bottleneck, stage_blocks = _DEPTHS[depth]
        block = _BLOCKS[(version, bottleneck)]
        expansion = _BOTTLENECK_EXPANSION if bottleneck else 1

        # Stem. Names follow torchvision (conv1, bn1, maxpool) so v1 state dicts line up.
        stem_ch = scale_channels(_STEM_CHANNELS, width)
        if self.small_input:
            self.conv1 = nn.Conv2d(in_chans, stem_ch, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_chans, stem_ch, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # v2 stem is a bare conv: the first block's pre-activation supplies the BN+ReLU.
        if version == "v1":
            self.bn1 = nn.BatchNorm2d(stem_ch)
            self.relu = nn.ReLU(inplace=True)
        else:
            self.bn1 = nn.Identity()
            self.relu = nn.Identity()

        in_ch = stem_ch
        for i, (planes, n_blocks) in enumerate(zip(_STAGE_PLANES, stage_blocks)):
            mid_ch = scale_channels(planes, width)
            # Scale the expanded count itself (not mid_ch * 4) so every channel count follows
            # the same rounding rule.
            out_ch = scale_channels(planes * expansion, width)
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(in_ch, mid_ch, out_ch, stride))
                in_ch = out_ch
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))

        # v2 blocks end on an un-normalised sum, so the features need a final BN+ReLU.
        if version == "v2":
            self.final_norm = nn.BatchNorm2d(in_ch)
            self.final_act = nn.ReLU(inplace=True)
        else:
            self.final_norm = nn.Identity()
            self.final_act = nn.Identity()

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_ch
        self.head = nn.Linear(self.num_features, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's init (zero_init_residual=False); Linear keeps PyTorch's default.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logits [B, num_features]; the rotation head and embedding attach here."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.final_act(self.final_norm(x))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def extra_repr(self) -> str:
        stem = "small" if self.small_input else "imagenet"
        return f"arch={self.arch_name}, stem={stem}, num_features={self.num_features}"


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"resnet(\d+)_(v\d+)(?:_x(\d+(?:\.\d*)?|\.\d+))?")


def list_models() -> list[str]:
    """All base architecture names, ordered by depth then version (resnet18_v1 ... resnet152_v2)."""
    return [f"resnet{d}_{v}" for d in sorted(_DEPTHS) for v in _VERSIONS]


def _unknown(name: str) -> UserError:
    return UserError(
        f"unknown architecture {name!r}; choose one of {', '.join(list_models())} "
        f"(a _xW suffix sets the width)"
    )


def parse_arch(name: str) -> tuple[int, str, float | None]:
    """`resnet50_v2_x4` -> (50, "v2", 4.0); `resnet50_v2` -> (50, "v2", None)."""
    m = _NAME_RE.fullmatch(name.strip()) if isinstance(name, str) else None
    if m is None:
        raise _unknown(name)
    depth, version, width = int(m.group(1)), m.group(2), m.group(3)
    if depth not in _DEPTHS or version not in _VERSIONS:
        raise _unknown(name)
    if width is None:
        return depth, version, None
    w = float(width)
    if w <= 0:
        raise UserError(f"width in {name!r} must be positive")
    return depth, version, w


def create_model(
    name: str,
    width: float | None = None,
    num_classes: int = 1000,
    image_size: int = 224,
    in_chans: int = 3,
) -> ResNet:
    """Build a registered ResNet. Width comes from the `_xW` suffix or the `width` kwarg."""
    depth, version, name_width = parse_arch(name)
    if width is not None and name_width is not None and float(width) != name_width:
        raise UserError(
            f"conflicting widths: {name!r} says {name_width:g} but width={width:g}; give one"
        )
    if width is None:
        width = name_width if name_width is not None else 1.0
    return ResNet(
        depth=depth,
        version=version,
        width=float(width),
        num_classes=num_classes,
        image_size=image_size,
        in_chans=in_chans,
    )
