"""Built-in models for tests, benchmarks and examples, made from ``torch.nn`` alone.

Every entry is a function ``(batch_size, seed, **options) -> ZooModel``; use
:func:`get` to build one and :func:`names` to list them. A :class:`ZooModel` is a
NamedTuple ``(model, loss_fn, inputs, targets)`` so ``model, loss_fn, x, y =
zoo.get("resnet18")`` works. Inputs and targets are synthetic (random, no
downloads). The model is returned in training mode.

Contract: the same ``(name, batch_size, seed, options)`` gives bitwise-identical
weights, buffers, inputs and targets in any process, and building a model does not
change torch's global random state (the builders run under ``torch.random.fork_rng``).

Models:

- ``mlp``: 3 Linear layers with ReLU on a 64-feature input, 10 classes.
- ``resnet18``: ResNet-18 for 32x32 images (CIFAR-style 3x3 stem, no max-pool),
  BatchNorm, ``ReLU(inplace=True)`` and residual adds; ``width`` option (default 64).
- ``mobilenetv2``: MobileNetV2 (inverted residuals, ReLU6, BatchNorm) for small images;
  options ``width_mult`` (default 0.5) and ``image_size`` (default 32).
- ``vgg11``: VGG-11 for 32x32 images (8 conv layers, 5 max-pools, a 512->10 head);
  option ``batch_norm`` (default False).
- ``bert``: a small BERT: token + learned positional embeddings, LayerNorm, dropout,
  ``num_layers`` (default 2) ``nn.TransformerEncoderLayer`` blocks with dropout, a
  classification head on the first token and a masked-LM head whose weight is tied to
  the token embedding; the loss is classification + LM cross-entropy.
- ``cnn_dropout_bn``: a small CNN with BatchNorm and Dropout (16x16 inputs).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ZooModel", "get", "names"]


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
    """ResNet-18 for 32x32 inputs: 3x3 stem, four stages of two BasicBlocks."""

    def __init__(self, num_classes: int = 10, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages = []
        in_ch = width
        for i, mult in enumerate((1, 2, 4, 8)):
            out_ch = width * mult
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1)))
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
    """MobileNetV2 for small images (the stem and the first stage keep stride 1)."""

    # expand ratio t, channels c, repeats n, first stride s (stride 2 -> 1 in stage 2 for 32x32)
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes: int = 10, width_mult: float = 0.5):
        super().__init__()
        in_ch = _make_divisible(32 * width_mult)
        last_ch = _make_divisible(1280 * max(1.0, width_mult))
        blocks: list[nn.Module] = [_conv_bn_relu6(3, in_ch, 3, 1)]
        for t, c, n, s in self.SETTINGS:
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


# --------------------------------------------------------------------------- builders


def _images(gen: torch.Generator, batch_size: int, size: int, num_classes: int = 10):
    x = torch.randn(batch_size, 3, size, size, generator=gen)
    y = torch.randint(0, num_classes, (batch_size,), generator=gen)
    return x, y


def _build_mlp(batch_size: int, gen: torch.Generator, in_features: int = 64, hidden: int = 128) -> ZooModel:
    model = MLP(in_features, hidden)
    x = torch.randn(batch_size, in_features, generator=gen)
    y = torch.randint(0, 10, (batch_size,), generator=gen)
    return ZooModel(model, F.cross_entropy, x, y)


def _build_resnet18(batch_size: int, gen: torch.Generator, width: int = 64) -> ZooModel:
    return ZooModel(ResNet18(width=width), F.cross_entropy, *_images(gen, batch_size, 32))


def _build_mobilenetv2(batch_size: int, gen: torch.Generator, width_mult: float = 0.5,
                       image_size: int = 32) -> ZooModel:
    return ZooModel(MobileNetV2(width_mult=width_mult), F.cross_entropy, *_images(gen, batch_size, image_size))


def _build_vgg11(batch_size: int, gen: torch.Generator, batch_norm: bool = False) -> ZooModel:
    return ZooModel(VGG11(batch_norm=batch_norm), F.cross_entropy, *_images(gen, batch_size, 32))


def _build_bert(batch_size: int, gen: torch.Generator, num_layers: int = 2, seq_len: int = 32,
                d_model: int = 64, vocab: int = 512, dropout: float = 0.1) -> ZooModel:
    if not 2 <= num_layers <= 4:
        raise ValueError(f"bert option num_layers must be 2, 3 or 4, got {num_layers!r}")
    model = TinyBERT(vocab=vocab, seq_len=seq_len, d_model=d_model, num_layers=num_layers, dropout=dropout)
    tokens = torch.randint(0, vocab, (batch_size, seq_len), generator=gen)
    labels = torch.randint(0, 4, (batch_size,), generator=gen)
    lm_targets = torch.randint(0, vocab, (batch_size, seq_len), generator=gen)
    return ZooModel(model, bert_loss, tokens, (labels, lm_targets))


def _build_cnn_dropout_bn(batch_size: int, gen: torch.Generator, channels: int = 8,
                          dropout: float = 0.5) -> ZooModel:
    model = CNNDropoutBN(channels=channels, dropout=dropout)
    return ZooModel(model, F.cross_entropy, *_images(gen, batch_size, 16))


_BUILDERS: dict[str, Callable[..., ZooModel]] = {
    "mlp": _build_mlp,
    "resnet18": _build_resnet18,
    "mobilenetv2": _build_mobilenetv2,
    "vgg11": _build_vgg11,
    "bert": _build_bert,
    "cnn_dropout_bn": _build_cnn_dropout_bn,
}


def names() -> list[str]:
    """The names :func:`get` accepts, in a fixed order."""
    return list(_BUILDERS)


def get(name: str, batch_size: int = 1, seed: int = 0, **options: Any) -> ZooModel:
    """Build zoo model ``name`` with one synthetic batch of ``batch_size`` samples.

    ``seed`` fixes the weights and the data; ``options`` are model-specific (see the
    module docstring). Raises ``ValueError`` naming the argument for an unknown name,
    a non-positive batch size or an unknown option.
    """
    if name not in _BUILDERS:
        raise ValueError(f"zoo name {name!r} is unknown; choose one of {', '.join(names())}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    builder = _BUILDERS[name]
    allowed = [p for p in inspect.signature(builder).parameters if p not in ("batch_size", "gen")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"zoo model {name!r} has no option {unknown[0]!r}; "
                         f"options: {', '.join(allowed) or 'none'}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        zm = builder(batch_size, gen, **options)
    zm.model.train()
    return zm
