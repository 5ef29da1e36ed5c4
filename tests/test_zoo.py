"""poet.zoo: the built-in models build deterministically, train, and have the promised parts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import poet
import solver
from poet import zoo

NAMES = ["mlp", "resnet18", "mobilenetv2", "vgg11", "bert", "cnn_dropout_bn", "ds_cnn", "sensor_cnn1d"]


def as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def test_names_are_fixed():
    assert zoo.names() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_model_trains_one_step(name):
    model, loss_fn, x, y = zoo.get(name, batch_size=2)
    assert model.training
    leaves = [t for t in (list(as_tuple(x)) + list(as_tuple(y)))]
    assert all(t.shape[0] == 2 for t in leaves)
    loss = loss_fn(model(*as_tuple(x)), y)
    assert loss.dim() == 0 and math.isfinite(loss.item())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model_and_data_and_global_rng_untouched(name):
    rng = torch.get_rng_state()
    a = zoo.get(name, seed=3)
    b = zoo.get(name, seed=3)
    c = zoo.get(name, seed=4)
    assert torch.equal(rng, torch.get_rng_state())
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    for ta, tb in zip(as_tuple(a.inputs) + as_tuple(a.targets), as_tuple(b.inputs) + as_tuple(b.targets)):
        assert torch.equal(ta, tb)


def test_zoo_model_unpacks():
    zm = zoo.get("mlp")
    model, loss_fn, x, y = zm
    assert isinstance(zm, zoo.ZooModel) and zm.model is model and zm.targets is y
    assert tuple(x.shape) == (1, 64) and tuple(y.shape) == (1,)


def test_resnet18_shape():
    model, _, x, _ = zoo.get("resnet18")
    assert tuple(x.shape) == (1, 3, 32, 32)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20  # 1 stem + 16 in blocks + 3 shortcut projections
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # CIFAR ResNet-18, 10 classes


def test_resnet18_class_with_more_blocks_per_stage():
    """ResNet18(blocks=3): 12 BasicBlocks, so 1 + 24 + 3 convs; the 4 extra blocks add two 3x3
    convs each (64, 128, 256, 512 channels: 2 x 9 x c^2 weights) and two BatchNorms (4c)."""
    model = zoo.ResNet18(blocks=3)
    assert sum(isinstance(m, zoo.BasicBlock) for m in model.modules()) == 12
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 28
    extra = sum(2 * 9 * c * c + 4 * c for c in (64, 128, 256, 512))
    assert sum(p.numel() for p in model.parameters()) == 11_173_962 + extra
    out = model(torch.randn(1, 3, 32, 32))
    assert tuple(out.shape) == (1, 10)


def test_mobilenetv2_width_and_size_options():
    small = zoo.get("mobilenetv2", width_mult=0.35, image_size=64)
    base = zoo.get("mobilenetv2")
    assert tuple(small.inputs.shape) == (1, 3, 64, 64)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(small.model) < count(base.model)
    assert any(isinstance(m, nn.ReLU6) for m in base.model.modules())
    assert tuple(small.model(small.inputs).shape) == (1, 10)


def test_vgg11_has_eight_convs():
    model, _, x, _ = zoo.get("vgg11")
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 8
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in zoo.get("vgg11", batch_norm=True).model.modules())


def test_bert_parts():
    model, loss_fn, tokens, (labels, lm_targets) = zoo.get("bert", batch_size=3, num_layers=3)
    layers = [m for m in model.modules() if isinstance(m, nn.TransformerEncoderLayer)]
    assert len(layers) == 3 and all(layer.dropout.p > 0 for layer in layers)
    assert model.lm_head.weight is model.tok_embed.weight  # tied
    assert tokens.dtype == torch.int64 and tuple(tokens.shape) == (3, 32)
    cls, lm = model(tokens)
    assert tuple(cls.shape) == (3, 4) and tuple(lm.shape) == (3, 32, 512)
    message = r"zoo model 'bert': option 'num_layers' must be an int in 2\.\.4, got 6$"
    with pytest.raises(ValueError, match=message):
        zoo.get("bert", num_layers=6)


def test_cnn_dropout_bn_parts():
    model, *_ = zoo.get("cnn_dropout_bn")
    assert any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="zoo name 'resnet50' is unknown; choose one of mlp"):
        zoo.get("resnet50")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        zoo.get("mlp", batch_size=0)
    with pytest.raises(ValueError, match="seed must be an int"):
        zoo.get("mlp", seed="x")
    with pytest.raises(ValueError, match="has no option 'depth'; options: width"):
        zoo.get("resnet18", depth=34)


# --------------------------------------------------------------------------- microcontroller-class models


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_bn(cin: int, cout: int, k: int, groups: int = 1) -> int:
    """Parameters of a bias-free k x k conv and its BatchNorm (weight and bias per channel)."""
    return k * k * (cin // groups) * cout + 2 * cout


def mbv2_count(stem: int, stages: list[tuple[int, int, int]], last: int, classes: int) -> int:
    """MobileNetV2 parameters from its channel table: stages are (t, c, n) of Table 2 with c
    already width-scaled; each bottleneck = 1x1 expand (if t > 1) + 3x3 depthwise + 1x1 project."""
    total = conv_bn(3, stem, 3)
    cin = stem
    for t, c, n in stages:
        for _ in range(n):
            hidden = cin * t
            total += (conv_bn(cin, hidden, 1) if t != 1 else 0) + conv_bn(hidden, hidden, 3, hidden)
            total += conv_bn(hidden, c, 1)
            cin = c
    return total + conv_bn(cin, last, 1) + last * classes + classes


def features_shape(model: nn.Module, x: torch.Tensor) -> tuple:
    with torch.no_grad():
        return tuple(model.features(x).shape)


def test_mobilenetv2_w035_at_128_is_the_paper_network():
    zm = zoo.get("mobilenetv2", width=0.35, resolution=128, layout="imagenet")
    # width 0.35, rounded to the nearest multiple of 8 but never below 90%: 32*0.35 = 11.2 -> 16
    # (8 < 0.9*11.2); 16*.35 = 5.6 -> 8; 24*.35 = 8.4 -> 8; 32*.35 -> 16; 64*.35 = 22.4 -> 24;
    # 96*.35 = 33.6 -> 32; 160*.35 = 56; 320*.35 = 112; the last conv keeps 1280 (width < 1)
    stages = [(1, 8, 1), (6, 8, 2), (6, 16, 3), (6, 24, 4), (6, 32, 3), (6, 56, 3), (6, 112, 1)]
    expected = mbv2_count(16, stages, 1280, 10)
    assert expected == 408_938
    assert n_params(zm.model) == expected
    assert tuple(zm.inputs.shape) == (1, 3, 128, 128)
    assert features_shape(zm.model, zm.inputs) == (1, 1280, 4, 4)  # total stride 32
    widths = [m.out_channels for m in zm.model.modules() if isinstance(m, nn.Conv2d)]
    assert widths[0] == 16 and widths[-1] == 1280 and len(widths) == 52  # 1 + 2 + 16*3 + 1
    assert sum(isinstance(m, nn.ReLU6) for m in zm.model.modules()) == 1 + 1 + 16 * 2 + 1
    assert sum(isinstance(m, nn.BatchNorm2d) for m in zm.model.modules()) == 52
    # 1000 classes (ImageNet head): the 1280 -> classes linear layer grows by 990 * 1281
    assert n_params(zoo.get("mobilenetv2", width=0.35, num_classes=1000).model) == expected + 990 * 1281


def test_mobilenetv2_default_and_old_option_names_unchanged():
    base = zoo.get("mobilenetv2")
    # width 0.5: 32*.5 = 16, 16*.5 = 8, 24*.5 = 12 -> 16, 16, 32, 48, 80, 160, last 1280
    stages = [(1, 8, 1), (6, 16, 2), (6, 16, 3), (6, 32, 4), (6, 48, 3), (6, 80, 3), (6, 160, 1)]
    assert n_params(base.model) == mbv2_count(16, stages, 1280, 10) == 700_490
    assert features_shape(base.model, base.inputs) == (1, 1280, 4, 4)  # 32x32, total stride 8
    old = zoo.get("mobilenetv2", width_mult=0.35, image_size=64, seed=2)
    new = zoo.get("mobilenetv2", width="0.35", resolution="64", layout="cifar", seed=2)
    sd_old, sd_new = old.model.state_dict(), new.model.state_dict()
    assert list(sd_old) == list(sd_new) and all(torch.equal(sd_old[k], sd_new[k]) for k in sd_old)
    assert torch.equal(old.inputs, new.inputs) and features_shape(new.model, new.inputs) == (1, 1280, 8, 8)
    with pytest.raises(ValueError, match="option 'width' is given twice"):
        zoo.get("mobilenetv2", width=0.35, width_mult=0.35)


def test_ds_cnn_small_matches_hello_edge():
    model, loss_fn, x, y = zoo.get("ds_cnn", batch_size=3)
    assert tuple(x.shape) == (3, 1, 49, 10) and tuple(y.shape) == (3,) and int(y.max()) < 12
    conv1 = 10 * 4 * 1 * 64 + 2 * 64  # 10x4 conv, 1 -> 64 channels, no bias; its BN
    block = (3 * 3 * 64 + 2 * 64) + (64 * 64 + 2 * 64)  # depthwise 3x3 + BN, pointwise 1x1 + BN
    head = 64 * 12 + 12
    assert n_params(model) == conv1 + 4 * block + head == 23_180
    with torch.no_grad():
        first = model.relu1(model.bn1(model.conv1(x)))
        out = model(x)
    assert tuple(first.shape) == (3, 64, 25, 5) and tuple(out.shape) == (3, 12)
    # Hello Edge reports 38.6K for DS-CNN (S): weights with BatchNorm folded into a bias per
    # conv, one byte each (8-bit), plus two 25x5x64 activation buffers of one byte
    folded = (10 * 4 * 64 + 64) + 4 * ((9 * 64 + 64) + (64 * 64 + 64)) + head
    assert folded == n_params(model) - 9 * 64  # nine BNs with two parameters become nine biases
    assert folded + 2 * first[0].numel() == 38_604
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == 64]
    assert len(depthwise) == 4


def test_sensor_cnn1d_parts():
    model, loss_fn, x, y = zoo.get("sensor_cnn1d", batch_size=2)
    assert tuple(x.shape) == (2, 3, 128) and int(y.max()) < 6
    # Conv1d k=5 (no bias) + BN: 3 -> 16, 16 -> 32, 32 -> 64; linear 64 -> 6
    expected = (5 * 3 * 16 + 32) + (5 * 16 * 32 + 64) + (5 * 32 * 64 + 128) + (64 * 6 + 6)
    assert n_params(model) == expected == 13_654
    with torch.no_grad():
        assert tuple(model.features(x).shape) == (2, 64, 32)  # 128, then stride 2 twice
        assert tuple(model(x).shape) == (2, 6)
    deeper = zoo.get("sensor_cnn1d", num_layers="4", channels="8", axes="6", window="256", kernel_size="3")
    assert tuple(deeper.inputs.shape) == (1, 6, 256)
    assert n_params(deeper.model) == ((3 * 6 * 8 + 16) + (3 * 8 * 16 + 32) + (3 * 16 * 32 + 64)
                                      + (3 * 32 * 64 + 128) + (64 * 6 + 6))


@pytest.mark.parametrize("name,options", [
    ("ds_cnn", {}),
    ("sensor_cnn1d", {}),
    ("mobilenetv2", {"width": "0.35", "resolution": "128", "layout": "imagenet"}),
])
def test_microcontroller_models_trace_and_price(name, options):
    zm = zoo.get(name, **options)
    graph = poet.extract(*zm)
    problem = poet.make_problem(graph, "nrf52840")
    problem.validate()
    assert problem.T == len(graph.nodes) > 10
    kinds = [n.kind for n in problem.nodes]
    loss = kinds.index("loss")  # one loss node, all forward nodes before it, backward after
    assert kinds == ["forward"] * loss + ["loss"] + ["backward"] * (len(kinds) - loss - 1)
    assert loss > 5 and len(kinds) - loss - 1 > 5
    # static RAM holds at least the fp32 parameters and their gradients
    assert problem.static_bytes >= 2 * 4 * n_params(zm.model)
    peak = solver.store_all_peak(problem)
    assert solver.min_feasible_ram(problem) < peak
    report = solver.simulate(problem.with_budgets(ram_budget_bytes=peak), solver.store_all(problem))
    assert report.peak_ram_bytes == peak
    assert solver.Problem.from_dict(problem.to_dict()).fingerprint == problem.fingerprint


def test_options_are_declared_and_described():
    opts = {o.name: o for o in zoo.options("mobilenetv2")}
    assert list(opts) == ["width", "resolution", "num_classes", "layout"]
    assert (opts["width"].type, opts["width"].default, opts["width"].aliases) == (float, 0.5, ("width_mult",))
    assert opts["layout"].choices == ("cifar", "imagenet")
    assert [o.name for o in zoo.options("ds_cnn")] == ["channels", "num_blocks", "num_classes", "frames",
                                                       "features"]
    assert [o.default for o in zoo.options("ds_cnn")] == [64, 4, 12, 49, 10]
    assert zoo.options("vgg11")[0].type is bool
    text = zoo.describe("mobilenetv2").splitlines()
    assert len(text) == 5 and text[0].startswith("mobilenetv2: ")
    assert text[1].strip() == ("width (float, default 0.5; a number in 0.05..4): width multiplier "
                               "(channels rounded to multiples of 8)")
    assert "layout (str, default cifar; one of cifar, imagenet)" in text[4]
    with pytest.raises(ValueError, match="zoo name 'mcunet' is unknown"):
        zoo.options("mcunet")


def test_options_parse_from_text():
    parsed = zoo.parse_options("mobilenetv2", {"width_mult": "0.35", "image_size": "128", "layout": "imagenet"})
    assert parsed == {"width": 0.35, "resolution": 128, "layout": "imagenet"}
    assert zoo.parse_options("vgg11", {"batch_norm": "true"}) == {"batch_norm": True}
    assert zoo.parse_options("vgg11", {"batch_norm": "No"}) == {"batch_norm": False}
    assert zoo.parse_options("bert", {"dropout": "0", "num_layers": 3}) == {"dropout": 0.0, "num_layers": 3}
    assert zoo.parse_options("ds_cnn", {}) == {}
    parsed = zoo.parse_options("ds_cnn", {"channels": "32"})
    assert type(parsed["channels"]) is int
    assert n_params(zoo.get("ds_cnn", channels="32").model) == (10 * 4 * 32 + 64) + 4 * (
        (9 * 32 + 64) + (32 * 32 + 64)) + 32 * 12 + 12
    assert any(isinstance(m, nn.BatchNorm2d) for m in zoo.get("vgg11", batch_norm="true").model.modules())


@pytest.mark.parametrize("name,options,message", [
    ("mobilenetv2", {"resolution": "1.5"}, "option 'resolution' must be an int in 8..1024, got '1.5'"),
    ("mobilenetv2", {"resolution": 4}, "option 'resolution' must be an int in 8..1024, got 4"),
    ("mobilenetv2", {"resolution": 128.0}, "option 'resolution' must be an int in 8..1024, got 128.0"),
    ("mobilenetv2", {"width": "wide"}, "option 'width' must be a number in 0.05..4, got 'wide'"),
    ("mobilenetv2", {"width": "nan"}, "option 'width' must be a number in 0.05..4, got 'nan'"),
    ("mobilenetv2", {"width": True}, "option 'width' must be a number in 0.05..4, got True"),
    ("mobilenetv2", {"width": 5}, "option 'width' must be a number in 0.05..4, got 5"),
    ("mobilenetv2", {"layout": "tiny"}, "option 'layout' must be one of cifar, imagenet, got 'tiny'"),
    ("mobilenetv2", {"depth": "3"}, "has no option 'depth'; options: width, resolution, num_classes, layout"),
    ("vgg11", {"batch_norm": "maybe"}, "option 'batch_norm' must be true or false, got 'maybe'"),
    ("vgg11", {"batch_norm": 1}, "option 'batch_norm' must be true or false, got 1"),
    ("bert", {"d_model": 30}, "option 'd_model' must be an int that is a multiple of 4 in 4..4096, got 30"),
    ("ds_cnn", {"num_blocks": 0}, "option 'num_blocks' must be an int in 1..16, got 0"),
    ("sensor_cnn1d", {"num_classes": "1"}, "option 'num_classes' must be an int in 2..100000, got '1'"),
])
def test_bad_option_values(name, options, message):
    with pytest.raises(ValueError) as info:
        zoo.get(name, **options)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"zoo model {name!r}") and text.endswith(message)
    with pytest.raises(ValueError):
        zoo.parse_options(name, options)
