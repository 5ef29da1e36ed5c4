"""Built-in models for tests, benchmarks and examples, made from ``torch.nn`` alone.

Every entry is a builder with declared options (name, type, default, allowed values);
use :func:`get` to build one, :func:`names` to list them and :func:`options` (or
:func:`describe`, for a command's help) to see a model's options. A :class:`ZooModel` is a
NamedTuple ``(model, loss_fn, inputs, targets)`` so ``model, loss_fn, x, y =
zoo.get("resnet18")`` works. Inputs and targets are synthetic (random, no
downloads). The model is returned in training mode.

Options may be given as values or as text (``zoo.get("mobilenetv2", width="0.35",
resolution="128")``, as a command line's ``key=value`` gives them); :func:`parse_options`
checks and converts them without building. An unknown option or a value outside its
declared range is a one-line ``ValueError`` naming the option and what is allowed.

Contract: the same ``(name, batch_size, seed, options)`` gives bitwise-identical
weights, buffers, inputs and targets in any process, and building a model does not
change torch's global random state (the builders run under ``torch.random.fork_rng``).

Models:

- ``mlp``: 3 Linear layers with ReLU on a 64-feature input, 10 classes.
- ``resnet18``: ResNet-18 for 32x32 images (CIFAR-style 3x3 stem, no max-pool),
  BatchNorm, ``ReLU(inplace=True)`` and residual adds; ``width`` option (default 64).
- ``mobilenetv2``: MobileNetV2 (Sandler et al. 2018: inverted residuals, ReLU6, BatchNorm);
  options ``width`` (multiplier, default 0.5; alias ``width_mult``), ``resolution``
  (default 32; alias ``image_size``), ``num_classes`` (10) and ``layout`` (``cifar``, the
  default: stride-1 stem and second stage; ``imagenet``: the paper's strides). MCUNetV3's
  MbV2-w0.35 at 128 is ``width=0.35 resolution=128 layout=imagenet``.
- ``vgg11``: VGG-11 for 32x32 images (8 conv layers, 5 max-pools, a 512->10 head);
  option ``batch_norm`` (default False).
- ``bert``: a small BERT: token + learned positional embeddings, LayerNorm, dropout,
  ``num_layers`` (default 2) ``nn.TransformerEncoderLayer`` blocks with dropout, a
  classification head on the first token and a masked-LM head whose weight is tied to
  the token embedding; the loss is classification + LM cross-entropy.
- ``cnn_dropout_bn``: a small CNN with BatchNorm and Dropout (16x16 inputs).
- ``ds_cnn``: the DS-CNN (S) keyword spotter of "Hello Edge" (Zhang et al. 2017): a 10x4
  stride-2 conv of 64 channels, 4 depthwise-separable blocks of 64, average pooling, 12
  classes, on 1x49x10 MFCC inputs; options ``channels``, ``num_blocks``, ``num_classes``,
  ``frames``, ``features``.
- ``sensor_cnn1d``: a 1-D CNN for sensor windows (3 axes x 128 samples, 6 classes, like
  human-activity recognition): 3 Conv1d-BN-ReLU layers (16, 32, 64 channels), global
  average pooling, a linear head; options ``axes``, ``window``, ``num_classes``,
  ``channels``, ``num_layers``, ``kernel_size``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .zoo_options import Option

__all__ = ["Option", "ZooModel", "describe", "get", "names", "options", "parse_options"]


class ZooModel(NamedTuple):
    """A model with its loss and one synthetic batch."""

    model: nn.Module
    loss_fn: Callable[..., torch.Tensor]
    inputs: Any
    targets: Any


# --------------------------------------------------------------------------- models


class MLP(nn.Module):
    """Linear-ReLU-Linear-ReLU-Linear."""

    def __init__(self, in_features: int = 64, hidden: int = 128, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.act2 = nn.ReLU()
        self.fc3 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs: 3x3 stem, four stages of two BasicBlocks (`blocks` per stage
    otherwise: 8 gives a 66-layer network; benchmarks/solve.py uses it for deeper graphs)."""

    def __init__(self, num_classes: int = 10, width: int = 64, blocks: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages = []
        in_ch = width
        for i, mult in enumerate((1, 2, 4, 8)):
            out_ch = width * mult
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(in_ch, out_ch, stride),
                                        *(BasicBlock(out_ch, out_ch, 1) for _ in range(blocks - 1))))
            in_ch = out_ch
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.pool(x)))


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` (never below 90% of it)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _conv_bn_relu6(in_ch: int, out_ch: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection (+ residual)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int):
        super().__init__()
        hidden = in_ch * expand
        self.use_residual = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_relu6(in_ch, hidden, 1, 1))
        layers.append(_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden))
        layers.append(nn.Conv2d(hidden, out_ch, 1, bias=False))
        layers.append(nn.BatchNorm2d(out_ch))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) with a width multiplier.

    ``layout="imagenet"`` is the paper's network (Table 2: a stride-2 3x3 stem, then the
    bottleneck stages below with their strides, total stride 32); ``layout="cifar"`` keeps
    the stem and the second stage at stride 1 (total stride 8) for 32x32 images. Every
    channel count except the last 1x1 conv's is ``c * width_mult`` rounded to a multiple of
    8 (``_make_divisible``); the last keeps 1280 for multipliers below 1, as in the paper.
    """

    # Table 2 of the paper: expand ratio t, channels c, repeats n, first stride s
    PAPER_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                      (6, 160, 3, 2), (6, 320, 1, 1))
    # the same with stage 2's stride 2 -> 1 (and a stride-1 stem) for 32x32 inputs
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))
    LAYOUTS = ("cifar", "imagenet")

    def __init__(self, num_classes: int = 10, width_mult: float = 0.5, layout: str = "cifar"):
        super().__init__()
        if layout not in self.LAYOUTS:
            raise ValueError(f"MobileNetV2 layout must be one of {', '.join(self.LAYOUTS)}, got {layout!r}")
        settings, stem_stride = (self.SETTINGS, 1) if layout == "cifar" else (self.PAPER_SETTINGS, 2)
        in_ch = _make_divisible(32 * width_mult)
        last_ch = _make_divisible(1280 * max(1.0, width_mult))
        blocks: list[nn.Module] = [_conv_bn_relu6(3, in_ch, 3, stem_stride)]
        for t, c, n, s in settings:
            out_ch = _make_divisible(c * width_mult)
            for i in range(n):
                blocks.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
        blocks.append(_conv_bn_relu6(in_ch, last_ch, 1, 1))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(last_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.flatten(self.pool(self.features(x)))))


class VGG11(nn.Module):
    """VGG-11 (configuration A) for 32x32 inputs with a single 512->classes head."""

    CONFIG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, num_classes: int = 10, batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in self.CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv2d(in_ch, int(item), 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(item)))
            layers.append(nn.ReLU(inplace=True))
            in_ch = int(item)
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


class TinyBERT(nn.Module):
    """A small BERT: embeddings, post-norm encoder layers, a CLS head and a tied LM head.

    ``forward(tokens)`` returns ``(class_logits, lm_logits)``; ``lm_head.weight`` is the
    same Parameter as ``tok_embed.weight``.
    """

    def __init__(self, vocab: int = 512, seq_len: int = 32, d_model: int = 64, num_heads: int = 4,
                 num_layers: int = 2, d_ff: int = 128, dropout: float = 0.1, num_classes: int = 4):
        super().__init__()
        self.tok_embed = nn.Embedding(vocab, d_model)
        self.pos_embed = nn.Embedding(seq_len, d_model)
        self.embed_norm = nn.LayerNorm(d_model)
        self.embed_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout=dropout, batch_first=True)
            for _ in range(num_layers)
        )
        self.pooler = nn.Linear(d_model, d_model)
        self.pooler_act = nn.Tanh()
        self.cls_head = nn.Linear(d_model, num_classes)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)
        self.lm_head.weight = self.tok_embed.weight
        self.register_buffer("positions", torch.arange(seq_len), persistent=False)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seq_len = tokens.shape[1]
        h = self.tok_embed(tokens) + self.pos_embed(self.positions[:seq_len])
        h = self.embed_dropout(self.embed_norm(h))
        for layer in self.layers:
            h = layer(h)
        cls = self.cls_head(self.pooler_act(self.pooler(h[:, 0])))
        return cls, self.lm_head(h)


def bert_loss(outputs: tuple[torch.Tensor, torch.Tensor],
              targets: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Classification cross-entropy plus token-level (LM) cross-entropy."""
    class_logits, lm_logits = outputs
    labels, tokens = targets
    lm = F.cross_entropy(lm_logits.reshape(-1, lm_logits.shape[-1]), tokens.reshape(-1))
    return F.cross_entropy(class_logits, labels) + lm


class CNNDropoutBN(nn.Module):
    """conv-BN-ReLU-pool twice, then Dropout and a Linear head (16x16 inputs)."""

    def __init__(self, num_classes: int = 10, channels: int = 8, dropout: float = 0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * channels * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(self.dropout(self.flatten(x)))


class DSCNN(nn.Module):
    """Depthwise-separable CNN keyword spotter: DS-CNN (S) of Zhang et al. 2017, "Hello Edge".

    Input ``(batch, 1, frames, features)`` MFCCs (49x10 in the paper). A 10x4 conv of stride
    2 (zero-padded 5 rows and 1 column each side, so 49x10 -> 25x5 as with TensorFlow's
    "same" padding), then ``num_blocks`` depthwise-separable blocks (3x3 depthwise conv, BN,
    ReLU, 1x1 pointwise conv, BN, ReLU), global average pooling and a linear classifier.
    Convs carry no bias: the BatchNorm that follows each one has it.
    """

    def __init__(self, num_classes: int = 12, channels: int = 64, num_blocks: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, (10, 4), stride=2, padding=(5, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU(inplace=True)
        blocks: list[nn.Module] = []
        for _ in range(num_blocks):
            blocks += [nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                       nn.Conv2d(channels, channels, 1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.relu1(self.bn1(self.conv1(x))))
        return self.fc(self.flatten(self.pool(x)))


class SensorCNN1d(nn.Module):
    """A 1-D CNN for windows of sensor samples (e.g. 3-axis accelerometer, HAR-like).

    Input ``(batch, axes, window)``. ``num_layers`` Conv1d-BN-ReLU layers padded by
    ``kernel_size // 2`` (length kept for odd kernels); layer i has ``channels * 2**i``
    output channels and stride 2 from the second layer on; then global average pooling and
    a linear classifier.
    """

    def __init__(self, axes: int = 3, num_classes: int = 6, channels: int = 16, num_layers: int = 3,
                 kernel_size: int = 5):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = axes
        for i in range(num_layers):
            out_ch = channels * 2 ** i
            layers += [nn.Conv1d(in_ch, out_ch, kernel_size, stride=1 if i == 0 else 2,
                                 padding=kernel_size // 2, bias=False),
                       nn.BatchNorm1d(out_ch), nn.ReLU(inplace=True)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))


# --------------------------------------------------------------------------- builders


def _images(gen: torch.Generator, batch_size: int, size: int, num_classes: int = 10):
    x = torch.randn(batch_size, 3, size, size, generator=gen)
    y = torch.randint(0, num_classes, (batch_size,), generator=gen)
    return x, y


def _build_mlp(batch_size: int, gen: torch.Generator, *, in_features: int, hidden: int) -> ZooModel:
    model = MLP(in_features, hidden)
    x = torch.randn(batch_size, in_features, generator=gen)
    y = torch.randint(0, 10, (batch_size,), generator=gen)
    return ZooModel(model, F.cross_entropy, x, y)


def _build_resnet18(batch_size: int, gen: torch.Generator, *, width: int) -> ZooModel:
    return ZooModel(ResNet18(width=width), F.cross_entropy, *_images(gen, batch_size, 32))


def _build_mobilenetv2(batch_size: int, gen: torch.Generator, *, width: float, resolution: int,
                       num_classes: int, layout: str) -> ZooModel:
    model = MobileNetV2(num_classes=num_classes, width_mult=width, layout=layout)
    return ZooModel(model, F.cross_entropy, *_images(gen, batch_size, resolution, num_classes))


def _build_vgg11(batch_size: int, gen: torch.Generator, *, batch_norm: bool) -> ZooModel:
    return ZooModel(VGG11(batch_norm=batch_norm), F.cross_entropy, *_images(gen, batch_size, 32))


def _build_bert(batch_size: int, gen: torch.Generator, *, num_layers: int, seq_len: int,
                d_model: int, vocab: int, dropout: float) -> ZooModel:
    model = TinyBERT(vocab=vocab, seq_len=seq_len, d_model=d_model, num_layers=num_layers, dropout=dropout)
    tokens = torch.randint(0, vocab, (batch_size, seq_len), generator=gen)
    labels = torch.randint(0, 4, (batch_size,), generator=gen)
    lm_targets = torch.randint(0, vocab, (batch_size, seq_len), generator=gen)
    return ZooModel(model, bert_loss, tokens, (labels, lm_targets))


def _build_cnn_dropout_bn(batch_size: int, gen: torch.Generator, *, channels: int,
                          dropout: float) -> ZooModel:
    model = CNNDropoutBN(channels=channels, dropout=dropout)
    return ZooModel(model, F.cross_entropy, *_images(gen, batch_size, 16))


def _build_ds_cnn(batch_size: int, gen: torch.Generator, *, channels: int, num_blocks: int,
                  num_classes: int, frames: int, features: int) -> ZooModel:
    model = DSCNN(num_classes=num_classes, channels=channels, num_blocks=num_blocks)
    x = torch.randn(batch_size, 1, frames, features, generator=gen)
    y = torch.randint(0, num_classes, (batch_size,), generator=gen)
    return ZooModel(model, F.cross_entropy, x, y)


def _build_sensor_cnn1d(batch_size: int, gen: torch.Generator, *, axes: int, window: int,
                        num_classes: int, channels: int, num_layers: int,
                        kernel_size: int) -> ZooModel:
    model = SensorCNN1d(axes=axes, num_classes=num_classes, channels=channels, num_layers=num_layers,
                        kernel_size=kernel_size)
    x = torch.randn(batch_size, axes, window, generator=gen)
    y = torch.randint(0, num_classes, (batch_size,), generator=gen)
    return ZooModel(model, F.cross_entropy, x, y)


# --------------------------------------------------------------------------- options
# (Option, the declared type, default and range of one, is in poet.zoo_options)

class _Entry(NamedTuple):
    build: Callable[..., ZooModel]
    options: tuple[Option, ...]
    summary: str


_CLASSES = Option("num_classes", int, 10, "classes of the classifier", 2, 100_000)

_MODELS: dict[str, _Entry] = {
    "mlp": _Entry(_build_mlp, (
        Option("in_features", int, 64, "input features", 1, 1 << 20),
        Option("hidden", int, 128, "hidden units of both hidden layers", 1, 1 << 20),
    ), "3-layer MLP, 64 features, 10 classes"),
    "resnet18": _Entry(_build_resnet18, (
        Option("width", int, 64, "channels of the first stage (doubling per stage)", 1, 1024),
    ), "ResNet-18 for 32x32 images"),
    "mobilenetv2": _Entry(_build_mobilenetv2, (
        Option("width", float, 0.5, "width multiplier (channels rounded to multiples of 8)", 0.05, 4.0,
               aliases=("width_mult",)),
        Option("resolution", int, 32, "input height and width in pixels", 8, 1024, aliases=("image_size",)),
        _CLASSES,
        Option("layout", str, "cifar", "cifar: stride-1 stem and stage 2 (total stride 8); imagenet: the "
               "paper's strides (total stride 32)", choices=MobileNetV2.LAYOUTS),
    ), "MobileNetV2 (MCUNetV3's MbV2-w0.35 at 128: width=0.35 resolution=128 layout=imagenet)"),
    "vgg11": _Entry(_build_vgg11, (
        Option("batch_norm", bool, False, "BatchNorm after every conv"),
    ), "VGG-11 for 32x32 images"),
    "bert": _Entry(_build_bert, (
        Option("num_layers", int, 2, "encoder layers", 2, 4),
        Option("seq_len", int, 32, "tokens per sample", 1, 4096),
        Option("d_model", int, 64, "model width (4 attention heads)", 4, 4096, multiple_of=4),
        Option("vocab", int, 512, "vocabulary size", 2, 1 << 20),
        Option("dropout", float, 0.1, "dropout probability", 0.0, 1.0),
    ), "small BERT with a classification and a tied masked-LM head"),
    "cnn_dropout_bn": _Entry(_build_cnn_dropout_bn, (
        Option("channels", int, 8, "channels of the first conv (the second has twice)", 1, 1024),
        Option("dropout", float, 0.5, "dropout probability before the head", 0.0, 1.0),
    ), "small CNN with BatchNorm and Dropout, 16x16 images"),
    "ds_cnn": _Entry(_build_ds_cnn, (
        Option("channels", int, 64, "channels of every conv", 1, 1024),
        Option("num_blocks", int, 4, "depthwise-separable blocks", 1, 16),
        Option("num_classes", int, 12, "keywords (classes)", 2, 100_000),
        Option("frames", int, 49, "MFCC frames (input height)", 1, 4096),
        Option("features", int, 10, "MFCC coefficients per frame (input width)", 2, 1024),
    ), "DS-CNN (S) keyword spotter on 1x49x10 MFCCs, 12 classes (Hello Edge)"),
    "sensor_cnn1d": _Entry(_build_sensor_cnn1d, (
        Option("axes", int, 3, "sensor channels (input channels)", 1, 1024),
        Option("window", int, 128, "samples per window", 1, 1 << 20),
        Option("num_classes", int, 6, "activity classes", 2, 100_000),
        Option("channels", int, 16, "channels of the first layer (doubling per layer)", 1, 1024),
        Option("num_layers", int, 3, "Conv1d-BN-ReLU layers (stride 2 from the second)", 1, 10),
        Option("kernel_size", int, 5, "kernel size of every conv", 1, 63),
    ), "1-D CNN on 3-axis windows of 128 samples, 6 classes (HAR-like)"),
}


def names() -> list[str]:
    """The names :func:`get` accepts, in a fixed order."""
    return list(_MODELS)


def _entry(name: str) -> _Entry:
    if name not in _MODELS:
        raise ValueError(f"zoo name {name!r} is unknown; choose one of {', '.join(names())}")
    return _MODELS[name]


def options(name: str) -> tuple[Option, ...]:
    """The options zoo model ``name`` declares, in a fixed order."""
    return _entry(name).options


def describe(name: str) -> str:
    """What zoo model ``name`` is and its options, one per line (for a command's help)."""
    entry = _entry(name)
    lines = [f"{name}: {entry.summary}"]
    lines += [f"  {opt.describe()}" for opt in entry.options]
    return "\n".join(lines)


def parse_options(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Options of zoo model ``name`` checked and converted to their declared types.

    Values may be text (``{"width": "0.35"}``, as from ``key=value`` on a command line);
    aliases are replaced by the option's name; options not given are left out (so the
    result records what was asked for). Raises ValueError naming the option and what is
    allowed for an unknown option, a name given twice or a bad value.
    """
    declared = _entry(name).options
    by_name = {alias: opt for opt in declared for alias in (opt.name, *opt.aliases)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        opt = by_name.get(key)
        if opt is None:
            raise ValueError(f"zoo model {name!r} has no option {key!r}; "
                             f"options: {', '.join(o.name for o in declared) or 'none'}")
        if opt.name in out:
            raise ValueError(f"zoo model {name!r}: option {opt.name!r} is given twice "
                             f"(aliases: {', '.join(opt.aliases)})")
        try:
            out[opt.name] = opt.parse(value)
        except ValueError as e:
            raise ValueError(f"zoo model {name!r}: {e}") from None
    return out


def get(name: str, batch_size: int = 1, seed: int = 0, **options: Any) -> ZooModel:
    """Build zoo model ``name`` with one synthetic batch of ``batch_size`` samples.

    ``seed`` fixes the weights and the data; ``options`` are model-specific (see
    :func:`options`), given as values or as their text (``width="0.35"``). Raises
    ``ValueError`` naming the argument for an unknown name, a non-positive batch size, or
    an unknown option or a value it does not allow.
    """
    entry = _entry(name)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    chosen = {opt.name: opt.default for opt in entry.options}
    chosen.update(parse_options(name, options))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        zm = entry.build(batch_size, gen, **chosen)
    zm.model.train()
    return zm
