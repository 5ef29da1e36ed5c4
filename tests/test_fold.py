"""poet.fold: frozen BatchNorm folded into the conv / Linear before it."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import poet
from poet import zoo
from poet.fold import fold_frozen_batchnorm

# Folding computes conv(x, w * s) + ((b - mean) * s + beta) where the original computes
# (conv(x, w) + b - mean) * s * gamma + beta (s = gamma / sqrt(var + eps)): the same real
# number rounded in a different order. Each float32 output is a dot product of K = C_in * k * k
# terms, so the two differ by a few ulps of the largest partial sums (K <= 72 here). 1e-5
# relative to the largest output (~80 float32 ulps) bounds that with room; a fold with a wrong
# channel, a wrong eps or batch instead of running statistics is off by 1e-2 or more.
RTOL = 1e-5


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(c, generator=gen))
                m.running_var.copy_(torch.rand(c, generator=gen) * 2 + 0.25)
                if m.affine:
                    m.weight.copy_(torch.randn(c, generator=gen))
                    m.bias.copy_(torch.randn(c, generator=gen))


class ConvBNReLU(nn.Module):
    """Conv2d-BN-ReLU twice, Conv1d-BN, and a Linear-BatchNorm1d-Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8, eps=1e-3), nn.ReLU())
        self.conv1d = nn.Conv1d(8, 4, 3)
        self.bn1d = nn.BatchNorm1d(4, affine=False)
        self.fc = nn.Linear(4 * 62, 16)
        self.fc_bn = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x).flatten(2)  # (N, 8, 64)
        y = F.relu(self.bn1d(self.conv1d(y)))  # (N, 4, 62)
        return self.head(F.relu(self.fc_bn(self.fc(y.flatten(1)))))


def _small_net() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = ConvBNReLU()
    _randomise_bn(model)
    return model, torch.randn(4, 3, 8, 8)


def _no_batchnorm(model: nn.Module) -> bool:
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


# =========================================================================== (1) same outputs


def test_folded_small_net_matches_original_in_eval_mode():
    model, x = _small_net()
    before = copy.deepcopy(model.state_dict())
    folded, report = fold_frozen_batchnorm(model, ["head"], x)

    assert [(p.producer, p.batchnorm) for p in report.folded] == [
        ("body.0", "body.1"), ("body.3", "body.4"), ("conv1d", "bn1d"), ("fc", "fc_bn")]
    assert report.skipped == []
    assert _no_batchnorm(folded) and isinstance(folded.body[1], nn.Identity) and isinstance(folded.fc_bn, nn.Identity)
    # the user's model is untouched (the pair-finding run in training mode used a copy)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model.body[1], nn.BatchNorm2d)
    # bytes by hand: BN2d(8): weight, bias, mean, var 4 * 8 * 4 B + num_batches_tracked 8 B;
    # BN1d(4, affine=False): 2 * 4 * 4 + 8; BN1d(16): 4 * 16 * 4 + 8
    assert report.removed_param_bytes == 2 * (2 * 8 * 4) + 0 + 2 * 16 * 4
    assert report.removed_buffer_bytes == 2 * (2 * 8 * 4 + 8) + (2 * 4 * 4 + 8) + (2 * 16 * 4 + 8)
    assert report.added_param_bytes == 8 * 4  # body.0 had no bias; conv1d and fc had one
    n_before = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    n_after = sum(t.numel() * t.element_size() for t in [*folded.parameters(), *folded.buffers()])
    assert n_before - n_after == report.saved_bytes

    model.eval()
    folded.eval()
    with torch.no_grad():
        want, got = model(x), folded(x)
    assert want.abs().max() > 1.0  # the outputs are not trivially small
    torch.testing.assert_close(got, want, rtol=0, atol=RTOL * want.abs().max().item())
    # an independent reference: the unfolded model in float64; folding is no further from it
    # than the float32 original is, give or take a few ulps (measured: 1.0e-7 and 1.4e-7 at 1.08)
    with torch.no_grad():
        exact = copy.deepcopy(model).double()(x.double())
    ulp = torch.finfo(torch.float32).eps * want.abs().max().item()
    assert (got.double() - exact).abs().max() <= (want.double() - exact).abs().max() + 4 * ulp


def test_folded_model_stays_folded_in_training_mode():
    """The folded BNs were in training mode: the report says so, and model.train() does not undo it."""
    model, x = _small_net()
    folded, report = fold_frozen_batchnorm(model, ["head"], x)
    assert report.switched_to_eval == ["body.1", "body.4", "bn1d", "fc_bn"]
    assert "running statistics" in report.convention and "TinyTL" in report.convention
    reference = copy.deepcopy(model)
    for name in report.switched_to_eval:
        reference.get_submodule(name).eval()
    folded.train()
    with torch.no_grad():
        want, got, batch_stats = reference(x), folded(x), model(x)
    torch.testing.assert_close(got, want, rtol=0, atol=RTOL * want.abs().max().item())
    assert (batch_stats - want).abs().max() > 0.1  # batch statistics would give another result


# =========================================================================== (2) MobileNetV2


@pytest.mark.slow
def test_mobilenetv2_last_layer_folds_every_batchnorm():
    zm = zoo.get("mobilenetv2", width=0.35, resolution=96)
    model, loss_fn, x, y = zm
    folded, report = fold_frozen_batchnorm(model, "last", x)
    # by hand from the architecture: stem conv-BN (1); 17 inverted residual blocks
    # (1 + 2 + 3 + 4 + 3 + 3 + 1), the first (expand 1) with depthwise + projection conv-BN (2), the
    # other 16 with expand + depthwise + projection (3 each); the last 1x1 conv-BN (1):
    # 1 + 2 + 16 * 3 + 1 = 52, every one a conv directly followed by its BN in a Sequential
    assert len(report.folded) == 52 and report.skipped == []
    assert all(p.producer_type == "Conv2d" for p in report.folded)
    assert len(report.switched_to_eval) == 52  # zoo models are built in training mode

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 52
    removed_params = sum(4 * (m.weight.numel() + m.bias.numel()) for m in bns)
    removed_buffers = sum(4 * (m.running_mean.numel() + m.running_var.numel()) + 8 for m in bns)
    added_bias = sum(4 * m.num_features for m in bns)  # every MobileNetV2 conv has bias=False
    assert report.removed_param_bytes == removed_params
    assert report.removed_buffer_bytes == removed_buffers
    assert report.added_param_bytes == added_bias

    g0 = poet.extract(model, loss_fn, x, y, train="last")
    g1 = poet.extract(folded, loss_fn, x, y, train="last")
    # one forward node per BN call goes; nothing is trained before the classifier, so no BN backward node
    assert g0.T - g1.T == 52
    assert g0.static_bytes - g1.static_bytes == removed_params + removed_buffers - added_bias
    assert g0.static_breakdown["buffers"] - g1.static_breakdown["buffers"] == removed_buffers
    assert g1.trainable == g0.trainable == ["classifier.weight", "classifier.bias"]


# =========================================================================== (3) other readers


class TwoReaders(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.bn2 = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        z = F.relu(self.bn(y)) + y  # the conv output is read by the BN and by the add
        z = self.bn2(self.conv2(z))  # a clean pair, as a control
        return self.head(z.mean((2, 3)))


class ReversedOrder(nn.Module):
    """A pair in a custom forward, registered BN first; and a Sequential whose adjacency is no pair."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(4)
        self.conv = nn.Conv2d(3, 4, 3)
        self.seq = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        y = self.seq[1](F.relu(self.seq[0](y)))  # conv -> relu -> BN: the BN's input is not the conv's output
        return self.head(y.mean((2, 3)))


class ReturnsConvOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.shared = nn.Conv2d(4, 4, 1)
        self.bn_shared = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        z = self.bn_shared(self.shared(self.shared(self.bn(y))))  # self.shared runs twice
        return self.head(z.mean((2, 3))), y  # y is also an output


def test_conv_with_a_second_reader_is_not_folded():
    torch.manual_seed(0)
    model = TwoReaders()
    _randomise_bn(model)
    x = torch.randn(2, 3, 6, 6)
    folded, report = fold_frozen_batchnorm(model, "last", x)
    assert [(p.producer, p.batchnorm) for p in report.folded] == [("conv2", "bn2")]
    [skip] = report.skipped
    assert (skip.batchnorm, skip.producer) == ("bn", "conv") and "also read by 1 other op" in skip.reason
    assert isinstance(folded.bn, nn.BatchNorm2d) and isinstance(folded.bn2, nn.Identity)
    model.eval()
    folded.eval()
    with torch.no_grad():
        want, got = model(x), folded(x)
    torch.testing.assert_close(got, want, rtol=0, atol=RTOL * want.abs().max().item())


def test_pairs_follow_the_forward_not_the_registration_order():
    torch.manual_seed(0)
    model = ReversedOrder()
    folded, report = fold_frozen_batchnorm(model, "last", torch.randn(2, 3, 6, 6))
    assert [(p.producer, p.batchnorm) for p in report.folded] == [("conv", "bn")]
    assert [(s.batchnorm, s.producer) for s in report.skipped] == [("seq.1", None)]
    assert "not the output of a Conv1d/Conv2d/Conv3d or Linear" in report.skipped[0].reason
    assert isinstance(folded.bn, nn.Identity) and isinstance(folded.seq[1], nn.BatchNorm2d)


def test_model_output_and_repeated_calls_are_not_folded():
    torch.manual_seed(0)
    model = ReturnsConvOutput()
    folded, report = fold_frozen_batchnorm(model, "last", torch.randn(2, 3, 6, 6))
    assert report.folded == []
    reasons = {s.batchnorm: s.reason for s in report.skipped}
    assert reasons["bn"] == "the output of conv is also read by the caller (it is part of the model's output)"
    assert reasons["bn_shared"] == "its producer shared is called 2 times"
    assert _no_batchnorm(folded) is False


# =========================================================================== (4) trained pairs


def test_trained_pairs_are_not_folded():
    model, x = _small_net()
    # the second conv trained, the first BN trained: only the conv1d and fc pairs fold
    folded, report = fold_frozen_batchnorm(model, ["body.3", "body.1.weight", "head"], x)
    assert [(p.producer, p.batchnorm) for p in report.folded] == [("conv1d", "bn1d"), ("fc", "fc_bn")]
    reasons = {s.batchnorm: s.reason for s in report.skipped}
    assert reasons == {"body.1": "trained under train=['body.3', 'body.1.weight', 'head']: body.1.weight",
                       "body.4": "trained under train=['body.3', 'body.1.weight', 'head']: body.3.weight, "
                                 "body.3.bias"}
    assert isinstance(folded.body[1], nn.BatchNorm2d) and isinstance(folded.body[4], nn.BatchNorm2d)


def test_train_all_and_bias_fold_nothing():
    model, x = _small_net()
    _, report = fold_frozen_batchnorm(model, "all", x)
    assert report.folded == [] and len(report.skipped) == 4
    assert all(s.reason.startswith("trained under train='all'") for s in report.skipped)
    # with "bias" every bias trains; bn1d has none (affine=False) and conv1d has one
    _, report = fold_frozen_batchnorm(model, "bias", x)
    assert report.folded == []
    assert {s.batchnorm: s.reason for s in report.skipped}["bn1d"] == "trained under train='bias': conv1d.bias"
    # a conv without bias and a BN without affine: folding would add a bias that "bias" trains
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4, affine=False), nn.Flatten(),
                        nn.Linear(64, 2))
    _, report = fold_frozen_batchnorm(net, "bias", torch.randn(2, 3, 6, 6))
    assert report.folded == []
    assert report.skipped[0].reason == "0 has no bias; folding adds one, which train='bias' would then train"


def test_frozen_flags_with_train_all_fold_and_keep_the_selection():
    model, x = _small_net()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("head."))
    folded, report = fold_frozen_batchnorm(model, "all", x)
    assert len(report.folded) == 4
    assert [n for n, p in folded.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]


# =========================================================================== (5) gradients


def test_last_layer_gradient_equals_original_with_frozen_bn_in_eval():
    zm = zoo.get("mobilenetv2", width=0.35, resolution=32, batch_size=4)
    model, loss_fn, x, y = zm
    _randomise_bn(model, seed=1)
    folded, report = fold_frozen_batchnorm(model, "last", x)
    assert len(report.folded) == 52

    def last_grads(net: nn.Module) -> tuple[torch.Tensor, ...]:
        torch.manual_seed(123)  # the same dropout mask for both
        loss = loss_fn(net(x), y)
        return (loss, *torch.autograd.grad(loss, [net.classifier.weight, net.classifier.bias]))

    reference = copy.deepcopy(model)
    for name in report.switched_to_eval:
        reference.get_submodule(name).eval()
    want = last_grads(reference)
    got = last_grads(folded)  # in training mode, dropout active
    assert folded.training and folded.dropout.training
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * w.abs().max().item())
    batch_stats = last_grads(copy.deepcopy(model))
    assert (batch_stats[1] - want[1]).abs().max() > 1e-3 * want[1].abs().max()  # the test can tell


# =========================================================================== arguments


def test_bad_arguments_raise_one_line_value_errors():
    model, x = _small_net()
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        fold_frozen_batchnorm("net", "last", x)
    with pytest.raises(ValueError, match="example_inputs must be a tensor"):
        fold_frozen_batchnorm(model, "last", [1, 2])
    with pytest.raises(ValueError, match="train must be one of"):
        fold_frozen_batchnorm(model, "first", x)


def test_rng_state_and_user_model_mode_are_kept():
    zm = zoo.get("cnn_dropout_bn")
    state = torch.get_rng_state()
    folded, report = fold_frozen_batchnorm(zm.model, "last", zm.inputs)
    assert torch.equal(torch.get_rng_state(), state)
    assert zm.model.training and folded.training
    # conv1-bn1 and conv2-bn2; the head fc trains
    assert [(p.producer, p.batchnorm) for p in report.folded] == [("conv1", "bn1"), ("conv2", "bn2")]
