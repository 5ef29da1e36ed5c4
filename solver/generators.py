"""Random small problems shaped like one training step, for tests and for the brute force.

`random_problem(seed, T)` builds a forward pass of F nodes (a chain, a chain with skip
connections, diamonds, or a random DAG), a loss node that reads every forward output nobody else
reads, one backward node per forward node in mirrored order, and, when T leaves room, extra
weight-gradient sinks. Backward node b_k reads the gradients of f_k's consumers (b_j for a forward
consumer f_j, the loss node for the loss) and the activations f_k's own backward needs: for a
layer (one input) its input, plus f_k itself when it has no input or at random (as a ReLU
backward would); for a join (several inputs, a residual add) nothing or its main input. Each
extra sink reads one backward node and the input of that layer, like a weight-gradient op, and
nobody reads it.

Sizes are whole KiB: activations 2-8, gradients 1-4, the loss 1, weight-gradient sinks 1-2,
workspace 0-2. Costs are drawn so that paging is sometimes cheaper and sometimes dearer than
recomputing (a per-problem flash price scale spans two decades). The RAM budget lies between
`min_feasible_ram` and `store_all_peak`. Graphs of T <= 6 have at most two layers and often
nothing to decide (the budget range is empty); from T = 7 most have a range.

Everything is a pure function of the arguments: the same seed gives the same problem (the
fingerprints are equal) on every run and platform, since only a string-seeded `random.Random`
is used.
"""

from __future__ import annotations

import random

from .problem import Node, Problem
from .simulate import min_feasible_ram, store_all_peak

SHAPES = ("chain", "diamond", "skip", "random")
KIB = 1024


def random_problem(seed: int, T: int | None = None, *, shape: str | None = None,
                   budget_frac: float | None = None) -> Problem:
    """A seeded random training-step problem with T nodes (T >= 3; None = 4..8 at random).

    shape: one of "chain", "diamond", "skip", "random" (None = one of them at random).
    budget_frac: where the RAM budget lies, 0 = `min_feasible_ram` (static bytes plus the largest
    single compute), 1 = the store-all peak; None = uniform at random. The budget is rounded down
    to a whole byte and never below the minimum. Runtime and flash budgets are left unset (use
    `Problem.with_budgets`).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if T is not None and (isinstance(T, bool) or not isinstance(T, int) or T < 3):
        raise ValueError(
            f"T must be a whole number >= 3 (forward, loss, backward) or None, got {T!r}")
    if shape is not None and shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)} or None, got {shape!r}")
    if budget_frac is not None and (isinstance(budget_frac, bool)
                                    or not isinstance(budget_frac, (int, float))
                                    or not 0.0 <= budget_frac <= 1.0):
        raise ValueError(f"budget_frac must be a number in [0, 1] or None, got {budget_frac!r}")

    rng = random.Random(f"poet-random-problem/{seed}")
    if T is None:
        T = rng.randint(4, 8)
    if shape is None:
        shape = rng.choice(SHAPES)
    # F forward nodes, 1 loss, F backward, the rest weight-gradient sinks; as many layers as T
    # allows while small (held activations are what make a budget interesting), from T = 10 on
    # some of the room goes to sinks
    F = (T - 1) // 2 if T < 10 else rng.randint(-(-(T - 1) // 3), (T - 1) // 2)
    fwd_preds = _forward_preds(rng, F, shape)
    order, edges = _wire(rng, fwd_preds, n_sinks=T - 1 - 2 * F)

    flash_scale = 10 ** rng.uniform(-1.0, 1.0)   # price of paging relative to computing
    # activations grow with depth in most problems: the early ones, held longest, are then worth
    # evicting while the late ones are in use (shrinking sizes give fewer interesting budgets)
    act = sorted((rng.randint(2, 8) * KIB for _ in range(F)), reverse=rng.random() < 0.3)
    nodes = []
    for idx, (tag, k) in enumerate(order):
        if tag == "f":
            kind, name, out = "forward", f"fwd{k}", act[k]
        elif tag == "loss":
            kind, name, out = "loss", "loss", KIB
        elif tag == "b":   # gradients drawn smaller than activations, so activations dominate
            kind, name, out = "backward", f"bwd{k}", rng.randint(1, 4) * KIB
        else:              # a weight gradient on its way to its static buffer
            kind, name, out = "backward", f"wgrad{k}_{idx}", rng.randint(1, 2) * KIB
        nodes.append(_random_node(rng, idx, name, kind, out, flash_scale))
    problem = Problem(nodes=nodes, edges=sorted(edges), static_bytes=rng.randint(0, 8) * KIB,
                      name=f"random-{shape}-T{T}-seed{seed}",
                      extra={"generator": {"seed": seed, "shape": shape, "T": T,
                                           "flash_scale": flash_scale}})
    lo, hi = min_feasible_ram(problem), store_all_peak(problem)
    frac = rng.random() if budget_frac is None else float(budget_frac)
    budget = lo + int(frac * (hi - lo))   # store-all's peak is never below the minimum
    return problem.with_budgets(ram_budget_bytes=budget)


def _wire(rng: random.Random, fwd_preds: list[list[int]], n_sinks: int
          ) -> tuple[list[tuple[str, int]], set[tuple[int, int]]]:
    """The node order (tags "f", "loss", "b", "w" with their layer k) and the edges by id.

    Ids: forward 0..F-1, then the loss, then b_{F-1} .. b_0, each followed by its sinks."""
    F = len(fwd_preds)
    fwd_succs: list[list[int]] = [[] for _ in range(F)]
    for k, ps in enumerate(fwd_preds):
        for p in ps:
            fwd_succs[p].append(k)
    order: list[tuple[str, int]] = [("f", k) for k in range(F)] + [("loss", 0)]
    sink_layers = [rng.randrange(F) for _ in range(n_sinks)]
    for k in reversed(range(F)):
        order.append(("b", k))
        order.extend(("w", k) for _ in range(sink_layers.count(k)))
    ids = {key: idx for idx, key in enumerate(order) if key[0] != "w"}

    edges: set[tuple[int, int]] = set()
    for k, ps in enumerate(fwd_preds):
        edges.update((ids[("f", p)], ids[("f", k)]) for p in ps)
        if not fwd_succs[k]:
            edges.add((ids[("f", k)], ids[("loss", 0)]))
    for k in range(F):
        b = ids[("b", k)]
        grads = [ids[("b", j)] for j in fwd_succs[k]] or [ids[("loss", 0)]]
        edges.update((g, b) for g in grads)
        ps = fwd_preds[k]
        if len(ps) > 1:   # a join (residual add, or a layer over a sum): at most the main input
            acts = [k - 1] if rng.random() < 0.5 else []
        else:             # a layer: its input (its weight gradient needs it), maybe its output
            acts = list(ps)
            if not acts or rng.random() < 0.3:
                acts.append(k)
        edges.update((ids[("f", a)], b) for a in acts)
    for idx, (tag, k) in enumerate(order):
        if tag == "w":    # weight gradient of layer k: upstream gradient and the layer's input
            edges.add((ids[("b", k)], idx))
            edges.add((ids[("f", fwd_preds[k][0] if fwd_preds[k] else k)], idx))
    return order, edges


def _forward_preds(rng: random.Random, F: int, shape: str) -> list[list[int]]:
    """preds[k] (sorted, all < k) of forward node k for the requested shape."""
    preds: list[list[int]] = [[]]
    for k in range(1, F):
        if shape == "chain":
            ps = [k - 1]
        elif shape == "skip":
            ps = [k - 1]
            if k >= 2 and (rng.random() < 0.6 or k == F - 1):
                ps.append(k - rng.randint(2, min(k, 4)))   # a residual over 1-3 layers
        elif shape == "diamond":
            # blocks of three after the root: two branches read the block's input, a join
            # reads both; a graph that ends mid-block lets the loss do the join
            pos = (k - 1) % 3
            base = k - 1 - pos
            ps = [base] if pos < 2 else [k - 2, k - 1]
        else:  # random
            ps = [k - 1] + [j for j in range(max(0, k - 6), k - 1) if rng.random() < 0.35]
        preds.append(sorted(set(ps)))
    return preds


def _random_node(rng: random.Random, idx: int, name: str, kind: str, out: int,
                 flash_scale: float) -> Node:
    ws = 0 if rng.random() < 0.5 else rng.randint(1, 2) * KIB
    compute_j = round(10 ** rng.uniform(-4.0, -2.0), 9)        # 0.1 mJ .. 10 mJ
    compute_s = round(compute_j * 10 ** rng.uniform(0.5, 1.5), 9)  # drawing 30-300 mW
    # paging: a fixed latency part plus a per-byte part, both scaled by the problem's flash price
    per_kib_j = 2e-4 * flash_scale * rng.uniform(0.5, 1.5)
    pagein_j = round(per_kib_j * (0.2 + out / KIB), 9)
    pageout_j = round(pagein_j * rng.uniform(1.5, 3.0), 9)   # writes dearer than reads
    pagein_s = round(pagein_j * 10 ** rng.uniform(0.5, 1.5), 9)
    pageout_s = round(pageout_j * 10 ** rng.uniform(0.5, 1.5), 9)
    return Node(idx, name, kind, out, compute_s=compute_s, compute_j=compute_j,
                pagein_s=pagein_s, pagein_j=pagein_j, pageout_s=pageout_s,
                pageout_j=pageout_j, workspace_bytes=ws)
