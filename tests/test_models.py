"""Tests for the TAKD plain-CNN / CIFAR-ResNet model zoo (Mirzadeh et al. 2020; He et al. 2016)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.models import (
    arch_name,
    available_archs,
    build_model,
    count_params,
    inference_flops,
    parse_arch,
)
from trainables.typed import InputError

PLAIN_DEPTHS = (2, 3, 4, 5, 6, 7, 8, 9, 10)
RESNET_DEPTHS = (8, 14, 20, 26, 32, 44, 56, 110)


def _logits_shape(arch: str, num_classes: int, in_channels: int, image_size: int) -> tuple:
    torch.manual_seed(0)
    model = build_model(arch, num_classes, in_channels, image_size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, image_size, image_size))
    return tuple(out.shape)


def test_available_archs_lists_both_families() -> None:
    expected = [f"plain{d}" for d in PLAIN_DEPTHS] + [f"resnet{d}" for d in RESNET_DEPTHS]
    assert available_archs() == expected


@pytest.mark.parametrize("arch", available_archs())
@pytest.mark.parametrize(
    ("num_classes", "in_channels", "image_size"),
    [(10, 1, 28), (100, 3, 32), (10, 3, 16)],
)
def test_every_arch_gives_logits(
    arch: str, num_classes: int, in_channels: int, image_size: int
) -> None:
    assert _logits_shape(arch, num_classes, in_channels, image_size) == (2, num_classes)


@pytest.mark.parametrize("arch", available_archs())
def test_parse_and_name_round_trip(arch: str) -> None:
    family, depth = parse_arch(arch)
    assert arch_name(family, depth) == arch


def test_parse_arch_examples() -> None:
    assert parse_arch("plain10") == ("plain", 10)
    assert parse_arch("resnet20") == ("resnet", 20)


@pytest.mark.parametrize("bad", ["x", "plain12", "resnet21", "vgg16", "plain", "Plain2", ""])
def test_unknown_arch_names_the_field(bad: str) -> None:
    with pytest.raises(InputError, match=r"^arch: expected one of plain2, plain3, .*, got "):
        parse_arch(bad)
    with pytest.raises(ValueError, match=r"^arch:"):
        build_model(bad, 10, 3, 32)


def test_arch_name_rejects_unregistered() -> None:
    with pytest.raises(ValueError, match=r"^arch:"):
        arch_name("plain", 11)


def test_error_message_is_one_line() -> None:
    with pytest.raises(ValueError) as info:
        build_model("x", 10, 3, 32)
    assert "\n" not in str(info.value)
    assert "resnet110" in str(info.value)


@pytest.mark.parametrize("width", [0, 0.0, -1.0, float("nan"), float("inf")])
def test_bad_width_names_the_field(width: float) -> None:
    with pytest.raises(ValueError, match=r"^width:"):
        build_model("plain2", 10, 3, 32, width=width)


@pytest.mark.parametrize("image_size", [8, 15, 0])
def test_small_image_names_the_field(image_size: int) -> None:
    with pytest.raises(ValueError, match=r"^image_size:"):
        build_model("plain2", 10, 3, image_size)


@pytest.mark.parametrize(("field", "kwargs"), [
    ("num_classes", {"num_classes": 0, "in_channels": 3}),
    ("in_channels", {"num_classes": 10, "in_channels": 0}),
])
def test_bad_shapes_name_the_field(field: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        build_model("resnet8", image_size=32, **kwargs)


def test_plain2_param_count_cifar100() -> None:
    # conv1 3->32:  3*32*9 = 864 weights + 32 bias + BN 2*32 = 960
    # conv2 32->32: 32*32*9 = 9216 weights + 32 bias + BN 2*32 = 9312
    # two pools: 32 -> 8, flatten 32*8*8 = 2048; FC 2048*100 + 100 = 204900
    # total 960 + 9312 + 204900 = 215172 (the He init has no conv bias: 64 fewer)
    assert count_params(build_model("plain2", 100, 3, 32)) == 215_172
    assert count_params(build_model("plain2", 100, 3, 32, init="he")) == 215_108


def test_plain10_param_count_cifar100() -> None:
    # conv weights (9*cin*cout): 3->32 864, 32->32 9216, 32->64 18432, 64->64 36864,
    #   64->128 73728, 128->128 147456, 128->256 294912, 3 x 256->256 589824 = 1769472
    #   sum = 2350944
    # BN: 2 * (32+32+64+64+128+128+4*256) = 2944
    # four pools: 32 -> 2, flatten 256*2*2 = 1024
    # FC512: 1024*512 + 512 = 524800; FC: 512*100 + 100 = 51300
    # conv biases: 32+32+64+64+128+128+4*256 = 1472
    # total 2350944 + 2944 + 524800 + 51300 + 1472 = 2931460
    assert count_params(build_model("plain10", 100, 3, 32)) == 2_931_460


def test_count_params_skips_frozen() -> None:
    model = build_model("plain2", 100, 3, 32)
    for p in model.features.parameters():
        p.requires_grad_(False)
    assert count_params(model) == 204_900


def test_plain2_flops_cifar100() -> None:
    # FlopCounterMode counts 2*MACs for conv and addmm; BN/ReLU/pool/bias are free.
    # conv1: out 32x32x32, 3*9 MACs each -> 2 * 32768 * 27  = 1769472
    # conv2: out 16x16x32, 32*9 MACs each -> 2 * 8192 * 288 = 4718592
    # fc:    2048 -> 100                 -> 2 * 2048 * 100 = 409600
    # total 6897664
    assert inference_flops(build_model("plain2", 100, 3, 32), 3, 32) == 6_897_664


def test_plain_flops_increase_with_depth() -> None:
    flops = [inference_flops(build_model(f"plain{d}", 100, 3, 32), 3, 32) for d in PLAIN_DEPTHS]
    assert all(a < b for a, b in zip(flops, flops[1:])), flops


def test_resnet_flops_increase_with_depth() -> None:
    depths = RESNET_DEPTHS[:4]
    flops = [inference_flops(build_model(f"resnet{d}", 100, 3, 32), 3, 32) for d in depths]
    assert all(a < b for a, b in zip(flops, flops[1:])), flops


@pytest.mark.parametrize("arch", ["plain4", "plain10", "resnet20"])
def test_half_width_is_cheaper(arch: str) -> None:
    full = build_model(arch, 100, 3, 32, width=1.0)
    half = build_model(arch, 100, 3, 32, width=0.5)
    assert inference_flops(half, 3, 32) < inference_flops(full, 3, 32)
    assert count_params(half) < count_params(full)


def test_tiny_width_still_builds() -> None:
    model = build_model("plain10", 10, 1, 28, width=0.01)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_inference_flops_restores_modes() -> None:
    model = build_model("resnet8", 10, 3, 32)
    model.train()
    model.layer1.eval()  # e.g. a frozen sub-stage must stay frozen
    before = {name: m.training for name, m in model.named_modules()}
    inference_flops(model, 3, 32)
    assert {name: m.training for name, m in model.named_modules()} == before

    model.eval()
    inference_flops(model, 3, 32)
    assert not any(m.training for m in model.modules())


def test_inference_flops_leaves_bn_stats_alone() -> None:
    model = build_model("plain4", 10, 3, 32).train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    inference_flops(model, 3, 32)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())


@pytest.mark.parametrize("arch", ["plain10", "resnet20"])
def test_build_is_deterministic(arch: str) -> None:
    def state(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build_model(arch, 100, 3, 32).state_dict()

    a, b, c = state(123), state(123), state(456)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_plain_structure() -> None:
    model = build_model("plain8", 100, 3, 32)
    assert isinstance(model.features, nn.Sequential)
    assert isinstance(model.classifier, nn.Sequential)
    assert isinstance(model.classifier[0], nn.Flatten)
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 64), (64, 100)]
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 and all(c.bias is not None for c in convs)  # the reference convs keep their bias


# The reference code's CIFAR-100 book (TAKD; odd depths from DGKD), as (conv channels, pools, hidden FC sizes,
# flattened size on 32x32 inputs).
REFERENCE_BOOK = {
    2: ([32, 32], 2, [], 2048),
    3: ([32, 32, 64], 2, [], 4096),
    4: ([32, 32, 64, 64], 2, [], 4096),
    5: ([32, 32, 64, 64, 128], 2, [], 8192),
    6: ([32, 32, 64, 64, 128, 128], 2, [], 8192),
    7: ([32, 32, 64, 64, 128, 128, 256], 4, [64], 1024),
    8: ([32, 32, 64, 64, 128, 128, 256, 256], 4, [64], 1024),
    9: ([32, 32, 64, 64, 128, 128, 256, 256, 256], 4, [512], 1024),
    10: ([32, 32, 64, 64, 128, 128, 256, 256, 256, 256], 4, [512], 1024),
}


@pytest.mark.parametrize("depth", sorted(REFERENCE_BOOK))
def test_plain_cnns_are_shaped_as_the_reference_book(depth: int) -> None:
    channels, pools, hidden, flat = REFERENCE_BOOK[depth]
    model = build_model(f"plain{depth}", 100, 3, 32)
    assert [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)] == channels
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == pools
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [m.in_features for m in linears] == [flat, *hidden]
    assert [m.out_features for m in linears] == [*hidden, 100]


def _conv_weight_std(init: str) -> tuple[float, float]:
    torch.manual_seed(0)
    conv = next(m for m in build_model("plain10", 100, 3, 32, init=init).features if isinstance(m, nn.Conv2d)
                and m.in_channels == 256)
    fan_in, fan_out = conv.in_channels * 9, conv.out_channels * 9
    return conv.weight.std().item(), (1 / (3 * fan_in)) ** 0.5 if init == "reference" else (2 / fan_out) ** 0.5


@pytest.mark.parametrize("init", ["reference", "he"])
def test_initialisation_matches_its_definition(init: str) -> None:
    # reference: PyTorch's default kaiming_uniform(a=sqrt(5)), std 1/sqrt(3 fan_in); he: normal, std sqrt(2/fan_out)
    measured, expected = _conv_weight_std(init)
    assert measured == pytest.approx(expected, rel=0.02)


def test_the_old_init_is_2_4_times_the_reference_std() -> None:
    assert _conv_weight_std("he")[0] / _conv_weight_std("reference")[0] == pytest.approx(2.45, rel=0.03)


def test_unknown_init_is_rejected() -> None:
    with pytest.raises(ValueError, match="^init: "):
        build_model("plain2", 10, 3, 32, init="xavier")


def test_resnet_uses_projection_shortcuts() -> None:
    model = build_model("resnet20", 100, 3, 32)
    projections = [
        m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
    ]
    assert [(p.in_channels, p.out_channels, p.stride) for p in projections] == [
        (16, 32, (2, 2)),
        (32, 64, (2, 2)),
    ]
    convs3 = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs3) + 1 == 20  # 19 3x3 convs + fc
