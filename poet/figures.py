"""What every figure of `poet.plot` shares: the strategies' styles, axis units, an off-screen
figure, and atomic saving in several formats.

Figures are plain `matplotlib.figure.Figure` objects bound to their own Agg canvas: no pyplot,
no display, no global backend switch, so they are safe in workers, servers and notebooks.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from solver.problem import atomic_file
from solver.strategies import REGISTRY, STRATEGIES

__all__ = ["FORMATS", "STRATEGY_STYLE", "strategy_style", "line_style", "byte_unit",
           "energy_unit", "save_figure", "new_figure", "add_tooltip", "tooltips", "short_name"]

FORMATS = ("png", "svg", "pdf")

# how each registered strategy is drawn: (label, colour, marker, line style), colours from the
# colour-blind-safe Okabe-Ito set; in the registry's display order (solver.STRATEGIES)
_STYLES = {
    "poet": ("POET (remat + paging)", "#000000", "o", "-"),
    "remat": ("remat only (Checkmate)", "#0072B2", "s", "--"),
    "paging": ("paging only", "#D55E00", "^", "--"),
    "greedy_paging": ("greedy paging", "#E69F00", "v", ":"),
    "dtr": ("DTR", "#009E73", "D", ":"),
    "sqrtn": ("sqrt(n) checkpoints", "#CC79A7", "P", ":"),
    "store_all": ("store all", "#56B4E9", "X", ":"),
}
STRATEGY_STYLE: dict[str, tuple[str, str | None, str, str]] = {
    s: _STYLES.get(s, (s, None, "o", "-")) for s in STRATEGIES}


def strategy_style(strategy: str) -> tuple[str, str | None, str, str]:
    """(label, colour, marker, line style) of a strategy; a name outside the registry is drawn
    under its own name in matplotlib's next colour."""
    return STRATEGY_STYLE.get(strategy, (strategy, None, "o", "-"))


def line_style(strategy: str) -> dict:
    """Keyword arguments of `Axes.plot` for a strategy's line: POET wide and translucent
    underneath; the other MILP strategies with small filled markers; heuristics with large
    hollow markers, so coinciding points stay distinguishable."""
    _, colour, marker, ls = strategy_style(strategy)
    if strategy == "poet":
        return dict(color=colour, marker=marker, ls=ls, lw=3.2, ms=10, zorder=2, alpha=0.5)
    s = REGISTRY.get(strategy)
    if s is not None and s.kind == "milp":
        return dict(color=colour, marker=marker, ls=ls, lw=1.5, ms=5, zorder=4)
    return dict(color=colour, marker=marker, ls=ls, lw=1.1, ms=9, mfc="none", mew=1.4, zorder=3)


# ---- units --------------------------------------------------------------------------------------

def byte_unit(max_bytes: float) -> tuple[float, str]:
    """(scale, name) of the binary unit in which `max_bytes` reads 1 .. 1023: B, KiB, MiB, GiB."""
    units = [(1.0, "B"), (2.0**10, "KiB"), (2.0**20, "MiB"), (2.0**30, "GiB"), (2.0**40, "TiB")]
    best = units[0]
    for scale, name in units:
        if abs(max_bytes) >= scale:
            best = (scale, name)
    return best


def energy_unit(max_joules: float) -> tuple[float, str]:
    """(scale, name) of the unit in which `max_joules` reads as 1 .. 999: nJ, µJ, mJ, J, kJ."""
    units = [(1e-9, "nJ"), (1e-6, "µJ"), (1e-3, "mJ"), (1.0, "J"), (1e3, "kJ")]
    best = units[0]
    for scale, name in units:
        if abs(max_joules) >= scale:
            best = (scale, name)
    return best


# ---- names and tooltips ------------------------------------------------------------------------

def short_name(name: str, width: int = 28) -> str:
    """`name` cut in the middle to at most `width` characters ("layer4.1.co…1.backward"), so a
    tick label keeps both the layer and the pass."""
    if width < 5:
        raise ValueError(f"width must be >= 5 characters, got {width!r}")
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "\u2026" + name[len(name) - (width - 1 - head):]


_TIP_ATTR = "poet_tooltips"      # per-figure {gid: text}; no state outside the figure


def add_tooltip(fig: Figure, artist, text: str) -> str:
    """Give `artist` a tooltip: in the SVG that `save_figure` writes, the artist's group carries
    a <title> with `text` (browsers show it on hover; it responds over its whole area even when
    it is not filled). Returns the artist's new gid ("tip-<n>", unique in the figure)."""
    tips = fig.__dict__.setdefault(_TIP_ATTR, {})
    gid = f"tip-{len(tips)}"
    artist.set_gid(gid)
    tips[gid] = str(text)
    return gid


def tooltips(fig: Figure) -> dict[str, str]:
    """{gid: text} of the tooltips added to `fig` (`add_tooltip`)."""
    return dict(fig.__dict__.get(_TIP_ATTR, {}))


def _svg_with_tooltips(svg: bytes, tips: dict[str, str]) -> bytes:
    """Insert each tooltip's <title> as the first child of the group matplotlib wrote for it."""
    if not tips:
        return svg

    def title(m: re.Match) -> str:
        text = tips.get(m.group(1))
        if text is None:
            return m.group(0)
        return (f'<g id="{m.group(1)}" pointer-events="all">'
                f"<title>{escape(text)}</title>")

    return re.sub(r'<g id="(tip-\d+)">', title, svg.decode("utf-8")).encode("utf-8")


# ---- figures and files --------------------------------------------------------------------------

def new_figure(width: float, height: float, ncols: int = 1, **kw) -> tuple[Figure, Any]:
    """A constrained-layout Figure on its own Agg canvas and its row of `ncols` axes."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, **kw)
    return fig, axes


def _formats(formats: Iterable[str]) -> list[str]:
    if isinstance(formats, str):
        formats = [formats]
    out = []
    for f in formats:
        f = str(f).lower().lstrip(".")
        if f not in FORMATS:
            raise ValueError(f"formats: {f!r} is not one of {', '.join(FORMATS)}")
        if f not in out:
            out.append(f)
    if not out:
        raise ValueError(f"formats is empty; give one or more of {', '.join(FORMATS)}")
    return out


def save_figure(fig: Figure, path: str | os.PathLike, formats: Iterable[str] = ("png", "svg"),
                *, dpi: int = 150) -> list[Path]:
    """Write `fig` once per format next to `path` (its suffix, if one of png/svg/pdf, is
    replaced: "out/energy.png" -> out/energy.png and out/energy.svg) and return the paths.

    Each file is written to a temp file in the same folder and renamed into place, so a reader
    never sees a half-written figure. The folder is created if needed. An SVG carries the
    figure's tooltips (`add_tooltip`) as <title> elements.
    """
    p = Path(path)
    if p.suffix.lower().lstrip(".") in FORMATS:
        p = p.with_suffix("")
    p.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    written = []
    for fmt in _formats(formats):
        target = p.with_name(p.name + "." + fmt)
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight",
                    metadata={"Date": None} if fmt == "svg" else None)
        data = buf.getvalue()
        if fmt == "svg":
            data = _svg_with_tooltips(data, tooltips(fig))
        with atomic_file(target, "wb") as f:
            f.write(data)
        written.append(target)
    return written
