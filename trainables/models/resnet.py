"""CIFAR ResNets of depth 6n+2 (He et al. 2016, "Deep Residual Learning for Image Recognition").

As TAKD's reference `resnet_cifar.py` (which the seed paper's ResNet numbers come from), by default and under
either `init`: a 3×3 stem of 16 channels, three stages of BasicBlocks (16/32/64 channels, stride 2 at stages 2
and 3), convs without bias, projection shortcuts (option B: 1×1 conv + BN) where the shape changes, global average
pooling (the reference's AvgPool2d(8) on 32×32 inputs), a linear head. Initialisation: He-normal fan-out for every
conv (the reference's `normal_(0, sqrt(2 / (k·k·out_channels)))`), BN weight 1 and bias 0, PyTorch's default for
the linear head. Depths are the reference's `resnet_book`: 8, 14, 20, 26, 32, 44, 56, 110.
"""

from __future__ import annotations

from torch import Tensor, nn

from trainables.typed import InputError

from .families import register_family, scaled

RESNET_DEPTHS: tuple[int, ...] = (8, 14, 20, 26, 32, 44, 56, 110)
STAGE_CHANNELS: tuple[int, int, int] = (16, 32, 64)
STAGE_STRIDES: tuple[int, int, int] = (1, 2, 2)


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    # No conv bias: every conv is followed by BatchNorm.
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity or projection (option B) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = _conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _stage(in_ch: int, out_ch: int, blocks: int, stride: int) -> nn.Sequential:
    # Only the first block changes resolution/width; the rest keep identity shortcuts.
    layers = [BasicBlock(in_ch, out_ch, stride)]
    layers += [BasicBlock(out_ch, out_ch, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class CifarResNet(nn.Module):
    """3x3 stem, three stages of ``n`` BasicBlocks (16/32/64 x width), GAP, linear head."""

    def __init__(self, depth: int, num_classes: int, in_channels: int, width: float = 1.0) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise InputError("arch", "a resnet depth 6n+2 with n >= 1", depth)
        blocks = (depth - 2) // 6
        c1, c2, c3 = (scaled(c, width) for c in STAGE_CHANNELS)
        s1, s2, s3 = STAGE_STRIDES
        self.conv1 = _conv3x3(in_channels, c1)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _stage(c1, c1, blocks, s1)
        self.layer2 = _stage(c1, c2, blocks, s2)
        self.layer3 = _stage(c2, c3, blocks, s3)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c3, num_classes)
        self._init_convs()

    def _init_convs(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


@register_family("resnet", depths=RESNET_DEPTHS)
def build_resnet(
    depth: int, num_classes: int, in_channels: int, image_size: int, width: float, init: str
) -> nn.Module:
    # Global average pooling makes the network independent of image_size; the reference init *is* He fan-out.
    del image_size, init
    return CifarResNet(depth, num_classes, in_channels, width)
