"""The cost model: a traced training step plus a device profile -> a priced `solver.Problem`.

For a node that performs F = flops + extra_flops floating-point operations, reads R bytes and
writes W bytes of RAM, and produces an output of O bytes, on a profile p (`poet.profiles`):

    compute_s = max(F / p.flops_per_s, (R + W) / p.mem_bandwidth_bytes_per_s)      (roofline)
    compute_j = p.active_power_w * compute_s

    pageout_s = p.flash_write_latency_s + O / p.flash_write_bytes_per_s            (O > 0)
    pageout_j = p.flash_write_power_w * pageout_s
    pagein_s  = p.flash_read_latency_s + O / p.flash_read_bytes_per_s              (O > 0)
    pagein_j  = p.flash_read_power_w * pagein_s

    pageout_s = pageout_j = pagein_s = pagein_j = 0                                 (O = 0)

Where the weights live (`make_problem(..., weights="flash" | "ram")`, default the profile's
`weights`): with "flash", the frozen parameters stay in the program flash (`p.program_flash`)
and are read in place: they leave the problem's static bytes, and a node that reads w bytes of
them (its frozen static inputs, once per compute, so again on every recompute) pays

    compute_s += w / p.program_flash.read_bytes_per_s
    compute_j  = p.active_power_w * compute_s + w * p.program_flash.read_j_per_byte

(the core runs at its active power while it waits for the flash, and the read itself costs
read_j_per_byte on top). Trained parameters are always in RAM (written every step). The frozen
bytes must fit in the program flash beside the firmware (capacity_bytes - reserved_bytes) and,
where paging shares that chip (shared_with_paging), beside the paging area the profile sets aside
(flash_bytes, which is then what a "device" flash budget means).

Why these choices:

- Compute energy is active power times the roofline time. When a node is compute-bound this is
  exactly F * p.joules_per_flop, POET's energy-per-FLOP model (its device tables give FLOP/s and
  FLOP/J whose ratio is the active power); when it is memory-bound the stall time is paid at the
  same power, so a node the FLOP counter scores at zero (an elementwise op, a copy) is not free
  to recompute. One rule for every node and every profile.
- Paging is charged at the storage's own power while the transfer runs, as POET does; the time
  is one fixed latency plus the bytes over the bandwidth. Paging does not overlap with compute
  (the simulator adds times up), so its time counts against the runtime budget.
- A zero-byte output is never written or read: paging it costs nothing (no latency either).

`graph_to_problem` turns a `poet.graph.TrainingGraph` into a `solver.Problem` under any price
(a function from a node's `NodeCounts` to the six cost fields of `solver.Node`; none: all costs
0). `make_problem` is `graph_to_problem` with the roofline price above (`roofline_price`) plus
the budgets; `reprice` reads the `NodeCounts` back from a problem's nodes (they keep them in
`extra`) and builds its nodes with the same code. Both resolve the budgets
(`poet.units.parse_budget`): bytes, "device" (the profile's RAM or flash size), a multiple of
the store-all peak RAM ("0.5x", `solver.store_all_peak`) or of the store-all time ("1.5x":
`Problem.store_all_time_s`, the sum of compute_s in id order, no paging), seconds, or None for
no limit.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import solver
from solver.problem import COST_FIELDS

from .profiles import Profile, load_profile
from .units import parse_budget

__all__ = ["NodeCounts", "Price", "graph_to_problem", "roofline_price", "price_node",
           "make_problem", "reprice", "apply_budgets", "COST_MODEL", "WEIGHTS"]

COST_MODEL = "poet.costs/roofline-1"
_GRAPH_NODE_FIELDS = ("id", "name", "kind", "flops", "extra_flops", "bytes_read",
                      "bytes_written", "out_bytes", "workspace_bytes")
_PRICE_FIELDS = ("flops", "extra_flops", "bytes_read", "bytes_written")  # kept in Node.extra
_FROZEN_FIELD = "frozen_bytes_read"  # kept in Node.extra when > 0: frozen parameter bytes the node reads
WEIGHTS = ("flash", "ram")


@dataclass(frozen=True)
class NodeCounts:
    """What a price reads of one node: FLOPs the counter scores (`flops`) and the estimate of
    the work it ignores (`extra_flops`), bytes of RAM read and written while computing, the
    bytes of the output that paging moves, and the bytes of weights it reads in place from the
    program flash (`weight_bytes_read`: its frozen parameters when weights="flash", else 0).

    Each is a finite number >= 0 (ints, floats and numpy scalars; not bool), kept as a plain
    Python int or float so that it is written to JSON as given. Raises ValueError naming the
    field otherwise.
    """

    flops: int | float
    extra_flops: int | float = 0
    bytes_read: int | float = 0
    bytes_written: int | float = 0
    out_bytes: int | float = 0
    weight_bytes_read: int | float = 0  # frozen parameter bytes read in place from the program flash

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, _amount(f.name, getattr(self, f.name)))


Price = Callable[[NodeCounts], Mapping[str, float]]
"""A price: a node's counts -> its six costs, keyed by `solver.problem.COST_FIELDS`."""


def _amount(name: str, value: Any) -> int | float:
    """A finite number >= 0 as a plain int or float (numpy scalars accepted; not bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return int(value) if isinstance(value, numbers.Integral) else v


def roofline_price(profile: Profile) -> Price:
    """The price of the module docstring on `profile`: `NodeCounts` -> the six costs."""
    if not isinstance(profile, Profile):
        raise TypeError(f"profile must be a poet.profiles.Profile (see load_profile), "
                        f"got {type(profile).__name__}")

    def price(counts: NodeCounts) -> dict[str, float]:
        f = float(counts.flops) + float(counts.extra_flops)
        moved = float(counts.bytes_read) + float(counts.bytes_written)
        out = float(counts.out_bytes)
        compute_s = max(f / profile.flops_per_s, moved / profile.mem_bandwidth_bytes_per_s)
        weights = float(counts.weight_bytes_read)
        read_j = 0.0
        if weights > 0:
            pf = profile.program_flash
            if pf is None:
                raise ValueError(f"weight_bytes_read is {counts.weight_bytes_read} but profile "
                                 f"{profile.name!r} has no [program_flash] to read weights from")
            compute_s += weights / pf.read_bytes_per_s
            read_j = weights * pf.read_j_per_byte
        if out > 0:
            pageout_s = profile.flash_write_latency_s + out / profile.flash_write_bytes_per_s
            pagein_s = profile.flash_read_latency_s + out / profile.flash_read_bytes_per_s
        else:
            pageout_s = pagein_s = 0.0
        return {"compute_s": compute_s, "compute_j": profile.active_power_w * compute_s + read_j,
                "pagein_s": pagein_s, "pagein_j": profile.flash_read_power_w * pagein_s,
                "pageout_s": pageout_s, "pageout_j": profile.flash_write_power_w * pageout_s}

    return price


def price_node(profile: Profile, *, flops: float, extra_flops: float = 0, bytes_read: float = 0,
               bytes_written: float = 0, out_bytes: float = 0,
               weight_bytes_read: float = 0) -> dict[str, float]:
    """Cost of one node on `profile` by the formulas in the module docstring: a dict keyed by
    `solver.problem.COST_FIELDS`, which `solver.Node(**costs, ...)` takes as it is.

    Raises TypeError if `profile` is not a Profile, and ValueError naming the argument when an
    amount is negative, NaN, infinite or not a number.
    """
    price = roofline_price(profile)
    return price(NodeCounts(flops=flops, extra_flops=extra_flops, bytes_read=bytes_read,
                            bytes_written=bytes_written, out_bytes=out_bytes,
                            weight_bytes_read=weight_bytes_read))


def _free(counts: NodeCounts) -> dict[str, float]:
    """The price of `graph_to_problem(graph)`: nothing costs anything."""
    return dict.fromkeys(COST_FIELDS, 0.0)


def _whole(where: str, value: Any) -> int:
    """A whole number >= 0 as a Python int (numpy integers and integral floats accepted)."""
    if isinstance(value, bool):
        raise ValueError(f"{where} must be a whole number >= 0, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        if isinstance(value, numbers.Real) and math.isfinite(float(value)) \
                and float(value).is_integer():
            n = int(value)
        else:
            raise ValueError(f"{where} must be a whole number >= 0, got {value!r}") from None
    if n < 0:
        raise ValueError(f"{where} must be a whole number >= 0, got {value!r}")
    return n


def _json_request(value: Any) -> Any:
    """The budget as the caller wrote it, in a JSON-safe form (for problem.extra)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Real):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    return str(value)


# ---- one function from counted nodes to a problem -----------------------------------------------

def _priced_node(where: str, price: Price, counts: NodeCounts, *, id: Any, name: Any, kind: Any,
                 workspace_bytes: Any, module_path: Any, aten_nodes: Any, frozen_read: int = 0,
                 node_extra: Mapping[str, Any] | None = None) -> solver.Node:
    """One `solver.Node` priced by `price`; its `extra` keeps the counts (and, when known, the
    module path and ATen ops) so that `reprice` can price it again."""
    try:
        costs = price(counts)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if not isinstance(costs, Mapping) or set(costs) != set(COST_FIELDS):
        got = sorted(costs) if isinstance(costs, Mapping) else type(costs).__name__
        raise ValueError(f"{where}: the price returned {got}; it must return a mapping with "
                         f"exactly the keys {', '.join(COST_FIELDS)}")
    extra: dict[str, Any] = {f: getattr(counts, f) for f in _PRICE_FIELDS}
    if frozen_read:
        extra[_FROZEN_FIELD] = frozen_read
    for key in ("update_of",):  # what the solver and the CLI may want to know about a node
        if node_extra and key in node_extra:
            extra[key] = node_extra[key]
    if module_path is not None:
        extra["module_path"] = str(module_path)
    if aten_nodes is not None:
        extra["aten_nodes"] = [str(a) for a in aten_nodes]
    return solver.Node(id=_whole(f"{where}.id", id), name=str(name), kind=kind,
                       out_bytes=_whole(f"{where}.out_bytes", counts.out_bytes),
                       workspace_bytes=_whole(f"{where}.workspace_bytes", workspace_bytes),
                       **costs, extra=extra)


def _problem(nodes: list[solver.Node], edges, static_bytes: Any, name: str,
             extra: Mapping[str, Any] | None) -> solver.Problem:
    return solver.Problem(
        nodes=nodes,
        edges=[(_whole(f"graph.edges[{e}][0]", a), _whole(f"graph.edges[{e}][1]", b))
               for e, (a, b) in enumerate(edges)],
        static_bytes=_whole("graph.static_bytes", static_bytes), name=name,
        extra=dict(extra) if extra is not None else {})


def _graph_name(graph) -> str:
    graph_name = getattr(graph, "name", None)
    if not isinstance(graph_name, str):
        raise ValueError(f"graph.name must be a string, got {graph_name!r}")
    return graph_name


def _graph_node(k: int, gn: Any, price: Price, frozen_read: int = 0, in_flash: bool = False) -> solver.Node:
    where = f"graph node {k}"
    missing = [f for f in _GRAPH_NODE_FIELDS if not hasattr(gn, f)]
    if missing:
        raise ValueError(f"{where} has no {', '.join(missing)} (a TrainingGraph node has "
                         f"{', '.join(_GRAPH_NODE_FIELDS)})")
    where = f"graph node {k} ({gn.name!r})"
    try:
        counts = NodeCounts(flops=gn.flops, extra_flops=gn.extra_flops, bytes_read=gn.bytes_read,
                            bytes_written=gn.bytes_written, out_bytes=gn.out_bytes,
                            weight_bytes_read=frozen_read if in_flash else 0)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    extra = getattr(gn, "extra", None)
    return _priced_node(where, price, counts, id=gn.id, name=gn.name, kind=gn.kind,
                        workspace_bytes=gn.workspace_bytes,
                        module_path=getattr(gn, "module_path", None),
                        aten_nodes=getattr(gn, "aten_nodes", None), frozen_read=frozen_read,
                        node_extra=extra if isinstance(extra, Mapping) else None)


def _check_weights(weights: Any) -> str:
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS} (where frozen parameters live), "
                         f"got {weights!r}")
    return weights


def _frozen_reads(graph) -> tuple[list[int], int]:
    """Per node, the frozen parameter bytes it reads, and the frozen bytes in all (0 for a graph
    that does not say: one that is not a TrainingGraph)."""
    reads = getattr(graph, "frozen_bytes_read", None)
    if not callable(reads):
        return [0] * len(graph.nodes), 0
    return list(reads()), int(graph.frozen_param_bytes)


def _weights_extra(weights: str, frozen: int) -> dict[str, Any]:
    """What a problem records of its weights: the placement, the frozen bytes, and the bytes
    the weights tier (program flash) holds."""
    return {"weights": weights, "frozen_param_bytes": frozen,
            "weights_flash_bytes": frozen if weights == "flash" else 0}


def _ram_split(graph, weights: str) -> dict[str, Any]:
    """``{"static_breakdown": ...}``: what the static bytes in RAM are made of (messages name
    it; frozen weights in flash are not in RAM), or {} when the graph states no split."""
    split = getattr(graph, "static_breakdown", None)
    if not isinstance(split, Mapping) or sum(split.values()) != graph.static_bytes:
        return {}
    split = {k: int(v) for k, v in split.items()}
    if weights == "flash" and "frozen_params" in split:
        split["frozen_params"] = 0
    return {"static_breakdown": {k: v for k, v in split.items() if v}}


def _repriced_split(split: Any, weights: str) -> dict[str, Any]:
    """The RAM split of a repriced problem: the recorded one, with the frozen parameters out
    of it for weights in flash. (Moving them back to RAM leaves a split that no longer adds up
    to the static bytes, which messages then do not show.)"""
    if not isinstance(split, Mapping) or not all(isinstance(v, int) for v in split.values()):
        return {}
    if weights == "flash":
        return {"static_breakdown": {k: v for k, v in split.items() if k != "frozen_params"}}
    return {"static_breakdown": dict(split)}


def graph_to_problem(graph, price: Price | None = None, *, name: str | None = None,
                     extra: Mapping[str, Any] | None = None, weights: str = "ram") -> solver.Problem:
    """`graph` as a `solver.Problem` whose node costs are `price(NodeCounts)`; no budgets.

    `graph` is a `poet.graph.TrainingGraph` or anything with the same attributes: `nodes` (each
    with id, name, kind, flops, extra_flops, bytes_read, bytes_written, out_bytes,
    workspace_bytes, and optionally module_path and aten_nodes), `edges` (pairs of ids),
    `static_bytes` and `name`. `price` maps a node's `NodeCounts` to a mapping with exactly the
    keys `solver.problem.COST_FIELDS` (`roofline_price(profile)` is the cost model);
    `price=None` gives every cost 0: the structural problem, enough for the simulator to check a
    schedule's rules and memory. Each node's `extra` keeps flops, extra_flops, bytes_read,
    bytes_written, module_path and aten_nodes (`reprice` reads them back). The problem is named
    `name` or `graph.name`; its `extra` is a copy of `extra` plus the weights record (`weights`,
    `frozen_param_bytes`, `weights_flash_bytes`) and, for a buffered update, the temporaries of
    the ``opt.step()`` that follows the step (`optimizer_step_workspace_bytes`: it runs beside the
    static bytes once the activations are freed, outside the schedule). `weights="flash"` takes the frozen parameters
    out of `static_bytes` and gives each node's counts the frozen bytes it reads
    (`NodeCounts.weight_bytes_read`); a node that reads frozen parameters records those bytes
    in its extra (`frozen_bytes_read`) either way.

    Raises ValueError (naming the graph node and attribute) for bad input or a price that does
    not return the six costs, and solver.ProblemError if the graph's structure is not a valid
    problem (ids out of order, backward edges) or a cost is negative or not finite.
    """
    graph_name = _graph_name(graph)
    weights = _check_weights(weights)
    price = _free if price is None else price
    reads, frozen = _frozen_reads(graph)
    in_flash = weights == "flash"
    nodes = [_graph_node(k, gn, price, r, in_flash) for k, (gn, r) in enumerate(zip(graph.nodes, reads))]
    static = _whole("graph.static_bytes", graph.static_bytes)
    if in_flash and frozen > static:
        raise ValueError(f"graph.static_bytes ({static}) are fewer than its frozen parameter bytes ({frozen})")
    extra = dict(extra) if extra is not None else {}
    if frozen or in_flash:
        extra.update(_weights_extra(weights, frozen))
    step = (getattr(graph, "extra", None) or {}).get("optimizer_step_workspace_bytes")
    if step:
        extra["optimizer_step_workspace_bytes"] = _whole("optimizer_step_workspace_bytes", step)
    return _problem(nodes, graph.edges, static - frozen if in_flash else static,
                    name if name is not None else graph_name, extra)


def _counts_of(n: solver.Node) -> NodeCounts:
    """The counts `graph_to_problem` recorded in a problem node's extra, typed and checked."""
    missing = [f for f in _PRICE_FIELDS if f not in n.extra]
    if missing:
        raise ValueError(f"problem node {n.id} ({n.name!r}) has no {', '.join(missing)} in "
                         f"its extra fields; only problems made by make_problem (which "
                         f"records them) can be repriced")
    try:
        return NodeCounts(out_bytes=n.out_bytes, **{f: n.extra[f] for f in _PRICE_FIELDS})
    except ValueError as e:
        raise ValueError(f"problem node {n.id} ({n.name!r}): {e}") from None


def has_counts(problem: solver.Problem) -> bool:
    """True if every node records the counts `reprice` needs (problems from make_problem)."""
    return all(all(f in n.extra for f in _PRICE_FIELDS) for n in problem.nodes)


def recorded_device(device: Any, where: str) -> str | None:
    """A device name read from a file (a problem's or schedule's ``device``), or None.

    Files are data: the name must be a built-in profile name, never a path to open.
    """
    if device is None:
        return None
    if not isinstance(device, str) or not device or "/" in device or os.sep in device \
            or device.lower().endswith(".toml") or device.lower() not in _builtin_names():
        raise ValueError(f"{where} records the device {str(device)[:60]!r}, which is not a "
                         f"built-in profile name; give the profile with --device")
    return device


def budget_profile(problem: solver.Problem, device: Any = None, what: str = "a 'device' budget") -> Profile:
    """The profile a "device" budget of `problem` reads: `device` (a Profile, name or path) when
    given, else the built-in profile the problem records (`extra["device"]`, checked by
    `recorded_device`). ValueError naming `what` when there is neither."""
    if device is None:
        device = recorded_device(problem.extra.get("device"), "the problem")
    if not device:
        raise ValueError(f"{what} needs a device: this problem names none (give a size "
                         f"instead, or --device)")
    return load_profile(device)


@functools.lru_cache(maxsize=1)
def _builtin_names() -> frozenset[str]:
    """Built-in profile names and aliases, lower case (the packaged files do not change)."""
    from .profiles import list_profiles, profile_names

    names = set(profile_names())
    for p in list_profiles():
        names.add(p.name)
        names.update(getattr(p, "aliases", ()) or ())
    return frozenset(n.lower() for n in names)


# ---- priced problems with budgets ---------------------------------------------------------------

def _check_budgets(ram_budget, runtime_budget, flash_budget) -> None:
    """Read the budgets first: a typo should fail before any work is done."""
    for value, what in ((ram_budget, "ram"), (runtime_budget, "runtime"), (flash_budget, "flash")):
        parse_budget(value, what)


def _priced_extra(profile: Profile, model: str, ram_budget, runtime_budget,
                  flash_budget) -> dict[str, Any]:
    return {"device": profile.name, "model": model, "element_bytes": profile.element_bytes,
            "cost_model": COST_MODEL,
            "budget_request": {"ram": _json_request(ram_budget),
                               "runtime": _json_request(runtime_budget),
                               "flash": _json_request(flash_budget)}}


def _check_fit(profile: Profile, weights: str, frozen: int) -> None:
    """Frozen weights kept in flash must fit in the program flash beside the firmware and, where
    paging shares that chip, beside the paging area (`Profile.check_weights_fit`)."""
    if weights != "flash" or frozen == 0:
        return
    if profile.program_flash is None:
        raise ValueError(f"weights='flash': profile {profile.name!r} has no [program_flash] section "
                         f"to keep the {frozen} B of frozen parameters in; use weights='ram'")
    try:
        profile.check_weights_fit(frozen, what="the frozen weights")
    except ValueError as e:
        raise ValueError(f"{e}; train more of the model or use weights='ram'") from None


def make_problem(graph, profile: Profile | str | os.PathLike, *, ram_budget=None,
                 runtime_budget=None, flash_budget=None, name: str | None = None,
                 weights: str | None = None) -> solver.Problem:
    """`graph_to_problem(graph, roofline_price(profile), weights=...)` with the budgets set.

    `weights`: where the frozen parameters live, "flash" (read in place from the program flash,
    priced per reading node, out of the RAM) or "ram"; None (default) takes the profile's
    `weights`. With "flash" they must fit in the program flash (capacity_bytes - reserved_bytes),
    else ValueError naming the sizes.

    `graph` as in `graph_to_problem`; `profile` is a Profile, a built-in name or a TOML path.

    Budgets (see `poet.units.parse_budget`): `ram_budget` takes bytes, a size string ("256KiB"),
    "device" (profile.usable_ram_bytes: RAM less ram_reserve_bytes), a multiple of the store-all
    peak ("0.5x") or None (no limit); `flash_budget` takes bytes, a size string, "device"
    (profile.flash_bytes, less the weights where paging shares the program flash) or None;
    `runtime_budget` takes seconds (2.5 or "2.5s"), a multiple of the store-all time ("1.5x",
    `Problem.store_all_time_s`, the sum of compute_s in id order) or None. A multiple is rounded
    down to whole bytes.

    The problem is named `name` or "<graph.name>@<profile.name>"; its `extra` records the device,
    the model, the element size, the cost model and the budgets as requested. Each node's `extra`
    keeps the counts, so `reprice` can price the same problem for another device without
    tracing again.

    Raises ValueError (naming the graph node and attribute, or the budget) for bad input, and
    solver.ProblemError if the graph's structure is not a valid problem (ids out of order,
    backward edges).
    """
    profile = load_profile(profile)
    weights = _check_weights(profile.weights if weights is None else weights)
    _check_budgets(ram_budget, runtime_budget, flash_budget)
    graph_name = _graph_name(graph)
    frozen = _frozen_reads(graph)[1]
    _check_fit(profile, weights, frozen)
    problem = graph_to_problem(
        graph, roofline_price(profile),
        name=name if name is not None else f"{graph_name}@{profile.name}",
        extra={**_priced_extra(profile, graph_name, ram_budget, runtime_budget, flash_budget),
               **_weights_extra(weights, frozen), **_ram_split(graph, weights)},
        weights=weights)
    return apply_budgets(problem, profile, ram_budget=ram_budget, runtime_budget=runtime_budget,
                         flash_budget=flash_budget)


def reprice(problem: solver.Problem, profile: Profile | str | os.PathLike, *, ram_budget=None,
            runtime_budget=None, flash_budget=None, name: str | None = None,
            weights: str | None = None) -> solver.Problem:
    """The same graph priced for another device, from the `NodeCounts` that `graph_to_problem`
    stored in each node's extra (no torch, no tracing): equal to `make_problem` on the graph.
    Budgets and `weights` as in `make_problem` (the frozen bytes each node reads and the frozen
    bytes in all come from the problem's records; a problem without them is taken to have no
    frozen parameters); the name defaults to "<model>@<profile.name>".

    Raises ValueError if a node lacks those counts (the problem was not made by make_problem or
    graph_to_problem) or one is not a finite number >= 0.
    """
    counts = [_counts_of(n) for n in problem.nodes]
    profile = load_profile(profile)
    weights = _check_weights(profile.weights if weights is None else weights)
    _check_budgets(ram_budget, runtime_budget, flash_budget)
    model = problem.extra.get("model")
    if not isinstance(model, str):
        model = problem.name.split("@")[0]
    frozen = _whole("problem extra frozen_param_bytes", problem.extra.get("frozen_param_bytes", 0))
    moved = _whole("problem extra weights_flash_bytes", problem.extra.get("weights_flash_bytes", 0))
    _check_fit(profile, weights, frozen)
    in_flash = weights == "flash"
    price = roofline_price(profile)
    nodes = []
    for n, c in zip(problem.nodes, counts):
        where = f"problem node {n.id} ({n.name!r})"
        read = _whole(f"{where}.{_FROZEN_FIELD}", n.extra.get(_FROZEN_FIELD, 0))
        c = NodeCounts(flops=c.flops, extra_flops=c.extra_flops, bytes_read=c.bytes_read,
                       bytes_written=c.bytes_written, out_bytes=c.out_bytes,
                       weight_bytes_read=read if in_flash else 0)
        nodes.append(_priced_node(where, price, c, id=n.id, name=n.name,
                                  kind=n.kind, workspace_bytes=n.workspace_bytes,
                                  module_path=n.extra.get("module_path"),
                                  aten_nodes=n.extra.get("aten_nodes"), frozen_read=read,
                                  node_extra=n.extra))
    static = problem.static_bytes + moved  # every parameter in RAM again
    repriced = _problem(nodes, problem.edges, static - frozen if in_flash else static,
                        name if name is not None else f"{model}@{profile.name}",
                        {**_priced_extra(profile, model, ram_budget, runtime_budget, flash_budget),
                         **_weights_extra(weights, frozen),
                         **_repriced_split(problem.extra.get("static_breakdown"), weights)})
    return apply_budgets(repriced, profile, ram_budget=ram_budget, runtime_budget=runtime_budget,
                         flash_budget=flash_budget)


def apply_budgets(problem: solver.Problem, profile: Profile | str | os.PathLike | None = None, *,
                  ram_budget=None, runtime_budget=None, flash_budget=None) -> solver.Problem:
    """A copy of `problem` with budgets read as `make_problem` reads them.

    `profile` is needed only for "device" budgets; when it is None the problem's
    `extra["device"]` names it. Use this for a problem loaded from a JSON file.
    """
    ram = parse_budget(ram_budget, "ram")
    runtime = parse_budget(runtime_budget, "runtime")
    flash = parse_budget(flash_budget, "flash")
    prof = None
    if "device" in (ram[0], flash[0]):
        prof = budget_profile(problem, profile)
    elif profile is not None:
        prof = load_profile(profile)
    return problem.with_budgets(
        ram_budget_bytes=_resolve_size(ram, problem, prof, "ram_bytes"),
        runtime_budget_s=_resolve_runtime(runtime, problem, runtime_budget),
        flash_budget_bytes=_resolve_size(flash, problem, prof, "flash_bytes"))


def _resolve_size(parsed, problem: solver.Problem, profile: Profile | None,
                  device_field: str) -> int | None:
    """Bytes for a parsed RAM or flash budget ("device" reads `device_field` of the profile;
    a multiple is of the store-all peak, which parse_budget allows for RAM only)."""
    kind, number = parsed
    if kind == "none":
        return None
    if kind == "bytes":
        return number
    if kind == "device":
        if device_field == "ram_bytes":
            return profile.usable_ram_bytes
        return _paging_left(profile, problem)
    if kind == "multiple":
        from .units import check_max_bytes
        return check_max_bytes(math.floor(number * solver.store_all_peak(problem)),
                               f"{device_field.split('_')[0]} budget {number}x the store-all peak")
    raise AssertionError(kind)  # pragma: no cover - parse_budget returns only these kinds


def _paging_left(profile: Profile, problem: solver.Problem) -> int:
    """The paging storage a "device" flash budget means: the profile's paging area,
    flash_bytes (where paging shares the program flash, the profile sets that area aside
    beside the firmware and the weights: `Profile.weights_capacity_bytes`)."""
    return profile.flash_bytes


def _resolve_runtime(parsed, problem: solver.Problem, request) -> float | None:
    kind, number = parsed
    if kind == "none":
        return None
    if kind == "seconds":
        return number
    if kind == "multiple":
        store_all_s = problem.store_all_time_s
        if store_all_s <= 0:
            raise ValueError(f"runtime budget {request!r}: the store-all time of this graph is "
                             f"0 s (no node has any compute cost), so a multiple of it is no "
                             f"budget; give seconds instead")
        seconds = number * store_all_s
        if not math.isfinite(seconds) or seconds > 1e9:
            raise ValueError(f"runtime budget {request!r}: {number} x the store-all time "
                             f"({store_all_s:.3g} s) is more than 1e9 s; check the problem's "
                             f"compute_s and page costs")
        return seconds
    raise AssertionError(kind)  # pragma: no cover
