"""Plain CNN teachers/assistants/students of TAKD (Mirzadeh et al. 2020), odd depths as in DGKD (Son et al. 2021).

Shaped and initialised as the reference code (TAKD's and DGKD's `plain_cnn_cifar.py`, CIFAR-100 book) by default:
- layers: `PLAIN_SPECS` is the reference's CIFAR-100 book, odd depths (3, 5, 7, 9) from DGKD's — plain6 has no
  third pool, plain7 and plain9 have hidden FC layers (64, 512) like plain8 and plain10;
- convs are 3×3, padding 1, stride 1, *with* a bias (the reference keeps PyTorch's default `bias=True`), then
  BatchNorm and ReLU; pools are 2×2 max-pools; hidden FC layers are Linear + ReLU, no dropout, no BN;
- initialisation ("reference"): none of its own — PyTorch's default for convs and linears (Kaiming-uniform with
  a = √5, i.e. weights of std ≈ 1/√(3·fan_in)) and BN weight 1, bias 0. Measured on a CIFAR-100-shaped task
  (`bench/fidelity.py`), the He-normal fan-out init we used before (conv std ≈ 2.4× larger) makes the teacher
  start far slower at TAKD's lr 0.01; it stays available as `init = "he"` (He-normal fan-out, no conv bias).
"""

from __future__ import annotations

from torch import Tensor, nn

from trainables.typed import InputError

from .families import register_family, scaled

# depth -> layer tokens. "C<n>": 3x3 conv+BN+ReLU with n channels, "P": 2x2 max-pool,
# "FC<n>": hidden Linear+ReLU with n units, "FC": final Linear to num_classes.
# Depth counts conv layers only, as in the TAKD paper.
PLAIN_SPECS: dict[int, tuple[str, ...]] = {
    2: ("C32", "P", "C32", "P", "FC"),
    3: ("C32", "C32", "P", "C64", "P", "FC"),
    4: ("C32", "C32", "P", "C64", "C64", "P", "FC"),
    5: ("C32", "C32", "P", "C64", "C64", "P", "C128", "FC"),
    6: ("C32", "C32", "P", "C64", "C64", "P", "C128", "C128", "FC"),
    7: ("C32", "C32", "P", "C64", "C64", "P", "C128", "C128", "P", "C256", "P", "FC64", "FC"),
    8: ("C32", "C32", "P", "C64", "C64", "P", "C128", "C128", "P", "C256", "C256", "P",
        "FC64", "FC"),
    9: ("C32", "C32", "P", "C64", "C64", "P", "C128", "C128", "P", "C256", "C256", "C256", "P",
        "FC512", "FC"),
    10: ("C32", "C32", "P", "C64", "C64", "P", "C128", "C128", "P", "C256", "C256", "C256",
         "C256", "P", "FC512", "FC"),
}


def split_spec(spec: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Split a spec into conv/pool tokens and hidden FC sizes, rejecting malformed specs."""
    first_fc = next((i for i, t in enumerate(spec) if t.startswith("FC")), len(spec))
    conv_tokens, fc_tokens = spec[:first_fc], spec[first_fc:]
    if not conv_tokens or not conv_tokens[0].startswith("C"):
        raise InputError("spec", "a conv token first", spec)
    if not fc_tokens or fc_tokens[-1] != "FC":
        raise InputError("spec", "the bare 'FC' token last", spec)
    for token in conv_tokens:
        if token != "P" and not (token[0] == "C" and token[1:].isdigit()):
            raise InputError("spec", "feature tokens C<channels> or P", token)
    for token in fc_tokens[:-1]:
        if not (token.startswith("FC") and token[2:].isdigit()):
            raise InputError("spec", "classifier tokens FC<units>", token)
    return conv_tokens, tuple(int(t[2:]) for t in fc_tokens[:-1])


def _conv_block(in_ch: int, out_ch: int, init: str) -> list[nn.Module]:
    if init == "reference":
        conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)
    else:  # "he": the following BatchNorm's shift makes a conv bias redundant
        conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return [conv, nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


def _build_features(
    tokens: tuple[str, ...], in_channels: int, image_size: int, width: float, init: str
) -> tuple[nn.Sequential, int]:
    """Conv/pool stack and the flattened size it produces for ``image_size`` inputs."""
    layers: list[nn.Module] = []
    channels, size = in_channels, image_size
    for token in tokens:
        if token == "P":
            if size < 2:
                raise InputError("image_size", f"a size that survives {tokens.count('P')} pools", image_size)
            layers.append(nn.MaxPool2d(2))
            size //= 2  # MaxPool2d floors odd sizes, e.g. 7 -> 3 on MNIST
        else:
            out_ch = scaled(int(token[1:]), width)
            layers.extend(_conv_block(channels, out_ch, init))
            channels = out_ch
    return nn.Sequential(*layers), channels * size * size


def _build_classifier(
    flat_size: int, hidden: tuple[int, ...], num_classes: int, width: float
) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    features = flat_size
    for units in hidden:
        out = scaled(units, width)
        layers.extend([nn.Linear(features, out), nn.ReLU(inplace=True)])
        features = out
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


class PlainCNN(nn.Module):
    """VGG-like conv stack followed by an MLP head, built from a PLAIN_SPECS entry."""

    def __init__(
        self,
        spec: tuple[str, ...],
        num_classes: int,
        in_channels: int,
        image_size: int,
        width: float = 1.0,
        init: str = "reference",
    ) -> None:
        super().__init__()
        conv_tokens, hidden = split_spec(spec)
        self.spec = spec
        self.features, flat_size = _build_features(conv_tokens, in_channels, image_size, width, init)
        self.classifier = _build_classifier(flat_size, hidden, num_classes, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@register_family("plain", depths=tuple(PLAIN_SPECS))
def build_plain(
    depth: int, num_classes: int, in_channels: int, image_size: int, width: float, init: str
) -> nn.Module:
    return PlainCNN(PLAIN_SPECS[depth], num_classes, in_channels, image_size, width, init)
