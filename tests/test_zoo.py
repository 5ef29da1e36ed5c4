"""poet.zoo: the built-in models build deterministically, train, and have the promised parts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from poet import zoo

NAMES = ["mlp", "resnet18", "mobilenetv2", "vgg11", "bert", "cnn_dropout_bn"]


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
    with pytest.raises(ValueError, match="num_layers must be 2, 3 or 4"):
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
