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

`make_problem` prices every node of a `poet.graph.TrainingGraph` this way and resolves the
budgets (`poet.units.parse_budget`): bytes, "device" (the profile's RAM or flash size), a
multiple of the store-all peak RAM ("0.5x", `solver.store_all_peak`) or of the store-all time
("1.5x": the sum of compute_s, no paging), seconds, or None for no limit.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from dataclasses import dataclass
from typing import Any

import solver

from .profiles import Profile, load_profile
from .units import parse_budget

__all__ = ["NodeCost", "price_node", "make_problem", "reprice", "COST_MODEL"]

COST_MODEL = "poet.costs/roofline-1"
_GRAPH_NODE_FIELDS = ("id", "name", "kind", "flops", "extra_flops", "bytes_read",
                      "bytes_written", "out_bytes", "workspace_bytes")
_PRICE_FIELDS = ("flops", "extra_flops", "bytes_read", "bytes_written")


@dataclass(frozen=True)
class NodeCost:
    """Time (s) and energy (J) of computing a node and of paging its output out and in."""

    compute_s: float
    compute_j: float
    pagein_s: float
    pagein_j: float
    pageout_s: float
    pageout_j: float


def _amount(name: str, value: Any) -> float:
    """A finite number >= 0 (ints, floats and numpy scalars; not bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def price_node(profile: Profile, *, flops: float, extra_flops: float = 0, bytes_read: float = 0,
               bytes_written: float = 0, out_bytes: float = 0) -> NodeCost:
    """Cost of one node on `profile` by the formulas in the module docstring.

    Raises ValueError naming the argument when an amount is negative, NaN, infinite or not a
    number.
    """
    if not isinstance(profile, Profile):
        raise TypeError(f"profile must be a poet.profiles.Profile (see load_profile), "
                        f"got {type(profile).__name__}")
    f = _amount("flops", flops) + _amount("extra_flops", extra_flops)
    moved = _amount("bytes_read", bytes_read) + _amount("bytes_written", bytes_written)
    out = _amount("out_bytes", out_bytes)
    compute_s = max(f / profile.flops_per_s, moved / profile.mem_bandwidth_bytes_per_s)
    if out > 0:
        pageout_s = profile.flash_write_latency_s + out / profile.flash_write_bytes_per_s
        pagein_s = profile.flash_read_latency_s + out / profile.flash_read_bytes_per_s
    else:
        pageout_s = pagein_s = 0.0
    return NodeCost(
        compute_s=compute_s,
        compute_j=profile.active_power_w * compute_s,
        pagein_s=pagein_s,
        pagein_j=profile.flash_read_power_w * pagein_s,
        pageout_s=pageout_s,
        pageout_j=profile.flash_write_power_w * pageout_s,
    )


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


def _json_number(value: Any) -> int | float:
    """A plain int or float (numpy scalars become Python numbers) for JSON."""
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _json_request(value: Any) -> Any:
    """The budget as the caller wrote it, in a JSON-safe form (for problem.extra)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Real):
        return _json_number(value)
    return str(value)


def make_problem(graph, profile: Profile | str | os.PathLike, *, ram_budget=None,
                 runtime_budget=None, flash_budget=None, name: str | None = None) -> solver.Problem:
    """Price every node of `graph` on `profile` and set the budgets.

    `graph` is a `poet.graph.TrainingGraph` or anything with the same attributes: `nodes` (each
    with id, name, kind, flops, extra_flops, bytes_read, bytes_written, out_bytes,
    workspace_bytes, and optionally module_path and aten_nodes), `edges` (pairs of ids),
    `static_bytes` and `name`. `profile` is a Profile, a built-in name or a TOML path.

    Budgets (see `poet.units.parse_budget`): `ram_budget` takes bytes, a size string ("256KiB"),
    "device" (profile.ram_bytes), a multiple of the store-all peak ("0.5x") or None (no limit);
    `flash_budget` takes bytes, a size string, "device" (profile.flash_bytes) or None;
    `runtime_budget` takes seconds (2.5 or "2.5s"), a multiple of the store-all time ("1.5x", the
    sum of compute_s) or None. A multiple is rounded down to whole bytes.

    The problem is named `name` or "<graph.name>@<profile.name>"; its `extra` records the device,
    the model, the element size, the cost model and the budgets as requested. Each node's `extra`
    keeps the graph's flops, extra_flops, bytes_read, bytes_written, module_path and aten_nodes, so
    `reprice` can price the same problem for another device without tracing again.

    Raises ValueError (naming the graph node and attribute, or the budget) for bad input, and
    solver.ProblemError if the graph's structure is not a valid problem (ids out of order,
    backward edges).
    """
    profile = load_profile(profile)
    # read the budgets first: a typo should fail before any work is done
    for value, what in ((ram_budget, "ram"), (runtime_budget, "runtime"), (flash_budget, "flash")):
        parse_budget(value, what)

    graph_name = getattr(graph, "name", None)
    if not isinstance(graph_name, str):
        raise ValueError(f"graph.name must be a string, got {graph_name!r}")
    nodes = []
    for k, gn in enumerate(graph.nodes):
        where = f"graph node {k}"
        missing = [f for f in _GRAPH_NODE_FIELDS if not hasattr(gn, f)]
        if missing:
            raise ValueError(f"{where} has no {', '.join(missing)} (a TrainingGraph node has "
                             f"{', '.join(_GRAPH_NODE_FIELDS)})")
        where = f"graph node {k} ({gn.name!r})"
        try:
            cost = price_node(profile, flops=gn.flops, extra_flops=gn.extra_flops,
                              bytes_read=gn.bytes_read, bytes_written=gn.bytes_written,
                              out_bytes=gn.out_bytes)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        extra: dict[str, Any] = {f: _json_number(getattr(gn, f)) for f in _PRICE_FIELDS}
        module_path = getattr(gn, "module_path", None)
        if module_path is not None:
            extra["module_path"] = str(module_path)
        aten_nodes = getattr(gn, "aten_nodes", None)
        if aten_nodes is not None:
            extra["aten_nodes"] = [str(a) for a in aten_nodes]
        nodes.append(solver.Node(
            id=_whole(f"{where}.id", gn.id), name=str(gn.name), kind=gn.kind,
            out_bytes=_whole(f"{where}.out_bytes", gn.out_bytes),
            workspace_bytes=_whole(f"{where}.workspace_bytes", gn.workspace_bytes),
            compute_s=cost.compute_s, compute_j=cost.compute_j,
            pagein_s=cost.pagein_s, pagein_j=cost.pagein_j,
            pageout_s=cost.pageout_s, pageout_j=cost.pageout_j,
            extra=extra))
    edges = [(_whole(f"graph.edges[{e}][0]", a), _whole(f"graph.edges[{e}][1]", b))
             for e, (a, b) in enumerate(graph.edges)]
    problem = solver.Problem(
        nodes=nodes, edges=edges,
        static_bytes=_whole("graph.static_bytes", graph.static_bytes),
        name=name if name is not None else f"{graph_name}@{profile.name}",
        extra={"device": profile.name, "model": graph_name,
               "element_bytes": profile.element_bytes, "cost_model": COST_MODEL,
               "budget_request": {"ram": _json_request(ram_budget),
                                  "runtime": _json_request(runtime_budget),
                                  "flash": _json_request(flash_budget)}})
    return apply_budgets(problem, profile, ram_budget=ram_budget, runtime_budget=runtime_budget,
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
    if profile is None and "device" in (ram[0], flash[0]):
        device = problem.extra.get("device")
        if not isinstance(device, str):
            raise ValueError("a 'device' budget needs a device: this problem names none "
                             "(give a size instead, or --device)")
        profile = device
    prof = load_profile(profile) if profile is not None else None
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
        return getattr(profile, device_field)
    if kind == "multiple":
        return math.floor(number * solver.store_all_peak(problem))
    raise AssertionError(kind)  # pragma: no cover - parse_budget returns only these kinds


def _resolve_runtime(parsed, problem: solver.Problem, request) -> float | None:
    kind, number = parsed
    if kind == "none":
        return None
    if kind == "seconds":
        return number
    if kind == "multiple":
        store_all_s = math.fsum(n.compute_s for n in problem.nodes)
        if store_all_s <= 0:
            raise ValueError(f"runtime budget {request!r}: the store-all time of this graph is "
                             f"0 s (no node has any compute cost), so a multiple of it is no "
                             f"budget; give seconds instead")
        return number * store_all_s
    raise AssertionError(kind)  # pragma: no cover


@dataclass(frozen=True)
class _RepricedNode:
    id: int
    name: str
    kind: str
    flops: float
    extra_flops: float
    bytes_read: float
    bytes_written: float
    out_bytes: int
    workspace_bytes: int
    module_path: str | None
    aten_nodes: list | None


@dataclass(frozen=True)
class _RepricedGraph:
    nodes: list
    edges: list
    static_bytes: int
    name: str


def reprice(problem: solver.Problem, profile: Profile | str | os.PathLike, *, ram_budget=None,
            runtime_budget=None, flash_budget=None, name: str | None = None) -> solver.Problem:
    """The same graph priced for another device, from the FLOP and byte counts that
    `make_problem` stored in each node's extra (no torch, no tracing). Budgets as in
    `make_problem`; the name defaults to "<model>@<profile.name>".

    Raises ValueError if a node lacks those counts (the problem was not made by make_problem).
    """
    gnodes = []
    for n in problem.nodes:
        missing = [f for f in _PRICE_FIELDS if f not in n.extra]
        if missing:
            raise ValueError(f"problem node {n.id} ({n.name!r}) has no {', '.join(missing)} in "
                             f"its extra fields; only problems made by make_problem (which "
                             f"records them) can be repriced")
        gnodes.append(_RepricedNode(
            id=n.id, name=n.name, kind=n.kind, out_bytes=n.out_bytes,
            workspace_bytes=n.workspace_bytes, module_path=n.extra.get("module_path"),
            aten_nodes=n.extra.get("aten_nodes"),
            **{f: n.extra[f] for f in _PRICE_FIELDS}))
    model = problem.extra.get("model")
    if not isinstance(model, str):
        model = problem.name.split("@")[0]
    graph = _RepricedGraph(nodes=gnodes, edges=list(problem.edges),
                           static_bytes=problem.static_bytes, name=model)
    return make_problem(graph, profile, ram_budget=ram_budget, runtime_budget=runtime_budget,
                        flash_budget=flash_budget, name=name)
