"""The problem: a training step as a DAG of priced nodes, plus budgets.

A `Problem` is plain data (no torch): T nodes in a topological order (ids 0..T-1), data edges
(i, j) with i < j, the bytes each node's output occupies, the temporaries it needs while it runs
(`workspace_bytes`), the time and energy of computing it and of paging its output in and out, the
static bytes that are resident for the whole step (parameters, gradient buffers, optimizer state,
buffers, the batch), and the budgets.

JSON form (``"format": "poet-problem/1"``): docs/formats.md, "The problem file", states every field,
its unit, default and validation rule, and the exact canonical form the fingerprint hashes.
Unknown fields, at top level and on nodes, are kept on load and written back on save.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import stat
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import ProblemError

FORMAT = "poet-problem/1"
KINDS = ("forward", "loss", "backward")
# the six cost fields of a Node, in file order (public: poet.costs prices exactly these)
COST_FIELDS = ("compute_s", "compute_j", "pagein_s", "pagein_j", "pageout_s", "pageout_j")
_INT_FIELDS = ("id", "out_bytes", "workspace_bytes")
_NODE_FIELDS = ("id", "name", "kind", "out_bytes", "workspace_bytes") + COST_FIELDS
# cached properties that do not depend on the name or the budgets (with_budgets keeps them)
_BUDGET_FREE_CACHES = ("preds", "succs", "fingerprint", "store_all_energy_j", "store_all_time_s")
_TOP_FIELDS = ("format", "name", "nodes", "edges", "static_bytes", "ram_budget_bytes",
               "runtime_budget_s", "flash_budget_bytes")


@dataclass(frozen=True)
class Node:
    """One schedulable tensor-producing node. Units: bytes, seconds, joules."""

    id: int
    name: str
    kind: str
    out_bytes: int
    compute_s: float
    compute_j: float
    pagein_s: float
    pagein_j: float
    pageout_s: float
    pageout_j: float
    workspace_bytes: int = 0
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        # one value, one spelling: whole-number floats in the byte fields become ints, ints in
        # the cost fields become floats, as `Problem.from_dict` reads them, so that a node built
        # in code has the canonical form (and fingerprint) it gets back from its file. Values of
        # any other type are left for `Problem.validate` to reject by field name.
        for f in _INT_FIELDS:
            v = getattr(self, f)
            if isinstance(v, float) and v.is_integer():
                object.__setattr__(self, f, int(v))
        for f in COST_FIELDS:
            v = getattr(self, f)
            if isinstance(v, int) and not isinstance(v, bool):
                object.__setattr__(self, f, float(v))

    def to_dict(self) -> dict:
        """The node's JSON object: its unknown fields (`extra`) overlaid with the known ones,
        every optional field included (the canonical form the fingerprint hashes)."""
        d = dict(self.extra)
        d.update({k: getattr(self, k) for k in _NODE_FIELDS})
        return d


def _where(i: int | None, name: str) -> str:
    return f"nodes[{i}].{name}" if i is not None else name


def _int_field(d: dict, key: str, i: int | None, *, default=None, minimum: int = 0) -> int:
    if key not in d:
        if default is not None:
            return default
        raise ProblemError(f"{_where(i, key)} is missing (a whole number >= {minimum} is required)")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer() and math.isfinite(v):
            v = int(v)
        else:
            raise ProblemError(f"{_where(i, key)} must be a whole number >= {minimum}, got {v!r}")
    if v < minimum:
        raise ProblemError(f"{_where(i, key)} must be >= {minimum}, got {v}")
    return v


def _float_field(d: dict, key: str, i: int | None, *, default=None, positive=False) -> float:
    if key not in d:
        if default is not None:
            return default
        raise ProblemError(f"{_where(i, key)} is missing (a finite number >= 0 is required)")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ProblemError(f"{_where(i, key)} must be a finite number >= 0, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ProblemError(f"{_where(i, key)} must be finite, got {v}")
    if v < 0 or (positive and v == 0):
        raise ProblemError(f"{_where(i, key)} must be {'> 0' if positive else '>= 0'}, got {v}")
    return v


def _optional(d: dict, key: str, conv):
    if d.get(key) is None:
        return None
    return conv(d, key, None)


@dataclass(frozen=True)
class Problem:
    """A training step to schedule. Validated on construction (see `validate`)."""

    nodes: list[Node]
    edges: list[tuple[int, int]]
    static_bytes: int = 0
    ram_budget_bytes: int | None = None
    runtime_budget_s: float | None = None
    flash_budget_bytes: int | None = None
    name: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "edges", [tuple(e) for e in self.edges])
        for f in ("static_bytes", "ram_budget_bytes", "flash_budget_bytes"):
            v = getattr(self, f)   # a whole-number float is read as the int it is (from_dict too)
            if isinstance(v, float) and v.is_integer():
                object.__setattr__(self, f, int(v))
        self.validate()

    # ---- structure ---------------------------------------------------------------------
    @property
    def T(self) -> int:
        return len(self.nodes)

    @cached_property
    def preds(self) -> list[list[int]]:
        """preds[j]: sorted ids of the nodes j reads."""
        out: list[list[int]] = [[] for _ in self.nodes]
        for i, j in self.edges:
            out[j].append(i)
        return [sorted(set(p)) for p in out]

    @cached_property
    def succs(self) -> list[list[int]]:
        """succs[i]: sorted ids of the nodes that read i."""
        out: list[list[int]] = [[] for _ in self.nodes]
        for i, j in self.edges:
            out[i].append(j)
        return [sorted(set(s)) for s in out]

    def validate(self) -> None:
        """Raise ProblemError unless there is at least one node, ids are 0..T-1, edges go forward
        between existing nodes, kinds are known, every size and cost is finite and non-negative,
        and the totals the solver forms from them are finite (`_check_totals`)."""
        if not isinstance(self.nodes, list) or not self.nodes:
            raise ProblemError("nodes is empty: a problem needs at least one node (the step "
                               "must compute something)")
        for k, n in enumerate(self.nodes):
            if not isinstance(n, Node):
                raise ProblemError(f"nodes[{k}] must be a solver.Node, got {type(n).__name__}")
            if n.id != k:
                raise ProblemError(f"nodes[{k}].id is {n.id}: ids must be 0..T-1 in order "
                                   f"(a topological order of the graph)")
            if n.kind not in KINDS:
                raise ProblemError(f"nodes[{k}].kind is {n.kind!r}; allowed: {', '.join(KINDS)}")
            d = {f: getattr(n, f) for f in _NODE_FIELDS}
            _int_field(d, "out_bytes", k)
            _int_field(d, "workspace_bytes", k)
            for f in COST_FIELDS:
                _float_field(d, f, k)
        T = len(self.nodes)
        for e, (i, j) in enumerate(self.edges):
            for v in (i, j):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ProblemError(f"edges[{e}] = {[i, j]}: node ids must be whole numbers")
                if not 0 <= v < T:
                    raise ProblemError(f"edges[{e}] = {[i, j]} names node {v}, which does not exist "
                                       f"(ids are 0..{T - 1})")
            if i == j:
                raise ProblemError(f"edges[{e}] = {[i, j]} is a self-loop (a cycle)")
            if i > j:
                cycle = _find_cycle(T, self.edges)
                if cycle:
                    raise ProblemError("the edges form a cycle: " + " -> ".join(map(str, cycle))
                                       + "; a training step must be a DAG")
                raise ProblemError(f"edges[{e}] = {[i, j]} goes backwards: every edge must go from a "
                                   f"lower id to a higher one (ids in topological order)")
        d = {"static_bytes": self.static_bytes, "ram_budget_bytes": self.ram_budget_bytes,
             "runtime_budget_s": self.runtime_budget_s, "flash_budget_bytes": self.flash_budget_bytes}
        _int_field(d, "static_bytes", None)
        _optional(d, "ram_budget_bytes", _int_field)
        _optional(d, "flash_budget_bytes", _int_field)
        _optional(d, "runtime_budget_s", lambda d, k, i: _float_field(d, k, i, positive=True))
        _check_totals(self)

    # ---- derived quantities --------------------------------------------------------------
    def with_budgets(self, **changes) -> "Problem":
        """A copy with other budgets (ram_budget_bytes, runtime_budget_s, flash_budget_bytes, name)."""
        allowed = {"ram_budget_bytes", "runtime_budget_s", "flash_budget_bytes", "name"}
        bad = set(changes) - allowed
        if bad:
            raise TypeError(f"with_budgets() got {sorted(bad)}; allowed: {sorted(allowed)}")
        copy = dataclasses.replace(self, **changes)
        for key in _BUDGET_FREE_CACHES:     # same nodes, edges and static bytes
            if key in self.__dict__:
                copy.__dict__[key] = self.__dict__[key]
        return copy

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of nodes, edges and static bytes (no name, no budgets).

        The nodes are in their canonical form (`Node.to_dict`: every optional field filled in,
        unknown fields kept), so a file that leaves `workspace_bytes` out has the fingerprint of
        one that writes 0; docs/formats.md states the recipe exactly. Computed once per problem
        (a Problem is immutable)."""
        canonical = json.dumps({"nodes": [n.to_dict() for n in self.nodes],
                                "edges": [list(e) for e in self.edges],
                                "static_bytes": self.static_bytes},
                               sort_keys=True, separators=(",", ":"), allow_nan=False)
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    @cached_property
    def store_all_energy_j(self) -> float:
        """Joules of computing every node once, summed in id order: the least energy any
        schedule can spend (and exactly what `simulate` reports for the store-all schedule)."""
        return sum(n.compute_j for n in self.nodes)

    @cached_property
    def store_all_time_s(self) -> float:
        """Seconds of computing every node once, summed in id order (no paging)."""
        return sum(n.compute_s for n in self.nodes)

    # ---- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dict(self.extra)
        d.update({
            "format": FORMAT,
            "name": self.name,
            "nodes": [n.to_dict() for n in self.nodes],
            "edges": [list(e) for e in self.edges],
            "static_bytes": self.static_bytes,
            "ram_budget_bytes": self.ram_budget_bytes,
            "runtime_budget_s": self.runtime_budget_s,
            "flash_budget_bytes": self.flash_budget_bytes,
        })
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "Problem":
        if not isinstance(d, dict):
            raise ProblemError(f"a problem must be a JSON object, got {type(d).__name__}")
        fmt = d.get("format", FORMAT)
        if fmt != FORMAT:
            raise ProblemError(f"format is {fmt!r}; this version reads {FORMAT!r}")
        raw_nodes = d.get("nodes")
        if not isinstance(raw_nodes, list):
            raise ProblemError("nodes is missing or not a list of node objects")
        nodes = []
        for k, rn in enumerate(raw_nodes):
            if not isinstance(rn, dict):
                raise ProblemError(f"nodes[{k}] must be an object, got {type(rn).__name__}")
            nid = _int_field(rn, "id", k)
            kind = rn.get("kind")
            if kind not in KINDS:
                raise ProblemError(f"nodes[{k}].kind is {kind!r}; allowed: {', '.join(KINDS)}")
            name = rn.get("name", f"n{nid}")
            if not isinstance(name, str):
                raise ProblemError(f"nodes[{k}].name must be a string, got {name!r}")
            nodes.append(Node(
                id=nid, name=name, kind=kind,
                out_bytes=_int_field(rn, "out_bytes", k),
                workspace_bytes=_int_field(rn, "workspace_bytes", k, default=0),
                **{f: _float_field(rn, f, k) for f in COST_FIELDS},
                extra={key: v for key, v in rn.items() if key not in _NODE_FIELDS},
            ))
        raw_edges = d.get("edges", [])
        if not isinstance(raw_edges, list) or not all(
                isinstance(e, (list, tuple)) and len(e) == 2 for e in raw_edges):
            raise ProblemError("edges must be a list of [from_id, to_id] pairs")
        name = d.get("name", "")
        if not isinstance(name, str):
            raise ProblemError(f"name must be a string, got {name!r}")
        return cls(
            nodes=nodes,
            edges=[(e[0], e[1]) for e in raw_edges],
            static_bytes=_int_field(d, "static_bytes", None, default=0),
            ram_budget_bytes=_optional(d, "ram_budget_bytes", _int_field),
            runtime_budget_s=_optional(d, "runtime_budget_s",
                                       lambda d, k, i: _float_field(d, k, i, positive=True)),
            flash_budget_bytes=_optional(d, "flash_budget_bytes", _int_field),
            name=name,
            extra={k: v for k, v in d.items() if k not in _TOP_FIELDS},
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the JSON file atomically (a temp file in the same folder, then rename)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Problem":
        return cls.from_dict(read_json(path, what="problem"))


def _check_totals(problem: Problem) -> None:
    """ProblemError naming the field when a total the solver forms overflows a float: per cost
    field, the sum over the nodes times T (a staged schedule materialises each node at most once
    per stage, so no schedule of the MILP spends more), and each of those totals' sum per unit;
    for the sizes, static bytes plus every output and workspace."""
    T = len(problem.nodes)
    for unit, fields in (("J", ("compute_j", "pagein_j", "pageout_j")),
                         ("s", ("compute_s", "pagein_s", "pageout_s"))):
        grand = 0.0
        for f in fields:
            s = sum(getattr(n, f) for n in problem.nodes)
            if not math.isfinite(s * T):
                raise ProblemError(f"{f}: the sum over the {T} nodes ({s:.3g} {unit}) times {T} "
                                   f"(the most a schedule can spend) overflows a float; the sum "
                                   f"must stay below {_FLOAT_MAX / T:.3g} {unit}")
            grand += s * T
        if not math.isfinite(grand):
            raise ProblemError(f"{' + '.join(fields)}: the sum over the nodes times {T} "
                               f"overflows a float; use smaller values")
    nbytes = problem.static_bytes + sum(n.out_bytes + n.workspace_bytes for n in problem.nodes)
    for f in ("ram_budget_bytes", "flash_budget_bytes"):
        v = getattr(problem, f)
        if v is not None and v > _BYTES_MAX:
            raise ProblemError(f"{f} is {v}; at most {_BYTES_MAX} is allowed")
    if nbytes > _BYTES_MAX:
        raise ProblemError(f"out_bytes + workspace_bytes: static bytes plus every node's output "
                           f"and workspace is {nbytes} bytes; at most {_BYTES_MAX} is allowed")


_FLOAT_MAX = 1.7976931348623157e308
_BYTES_MAX = 2 ** 63 - 1     # the sizes' total must fit a signed 64-bit integer (other tools)


def _find_cycle(T: int, edges) -> list[int] | None:
    """A cycle in the graph as a list of ids (first id repeated at the end), or None."""
    adj: list[list[int]] = [[] for _ in range(T)]
    for i, j in edges:
        adj[i].append(j)
    color = [0] * T  # 0 new, 1 on the stack, 2 done
    for root in range(T):
        if color[root]:
            continue
        stack = [(root, iter(adj[root]))]
        path = [root]
        color[root] = 1
        while stack:
            v, it = stack[-1]
            w = next(it, None)
            if w is None:
                stack.pop()
                path.pop()
                color[v] = 2
            elif color[w] == 1:
                return path[path.index(w):] + [w]
            elif color[w] == 0:
                color[w] = 1
                stack.append((w, iter(adj[w])))
                path.append(w)
    return None


def _reject_constant(c: str):
    raise ValueError(f"{c} is not a number JSON allows")


def read_json(path: str | os.PathLike, *, what: str) -> Any:
    """Read a JSON file; NaN/Infinity, syntax errors, text that is not UTF-8 and nesting too
    deep for the parser (its RecursionError) become a ProblemError (a ScheduleError for a
    schedule) naming the file."""
    p = Path(path)
    err = ProblemError if what == "problem" else _schedule_error()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file not found: {p}") from None
    except UnicodeDecodeError as e:
        raise err(f"{p}: not a valid {what} JSON file: it is not UTF-8 text ({e.reason} at "
                  f"byte {e.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise err(f"{p}: not a valid {what} JSON file: {e}") from None


def _schedule_error():
    from .errors import ScheduleError
    return ScheduleError


def _umask() -> int:
    """The process's umask: from /proc/self/status where Linux shows it, else by setting and
    restoring it (the only portable way)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(p: Path) -> int:
    """The permission bits `p` should get: those of the file it replaces, else what the umask
    gives a new file (0666 less the umask, as open() would)."""
    try:
        st = os.stat(p)
    except OSError:
        return 0o666 & ~_umask()
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs):
    """Open a temp file beside `path` for writing; on a clean exit it is flushed, synced and
    renamed onto `path`, on an exception it is removed. A reader never sees a half-written file,
    and a failure leaves the old file (if any) untouched. The file gets the permission bits of
    the file it replaces, or those the umask gives a new file. Errors name `path`, not the temp
    file (FileNotFoundError when its folder does not exist)."""
    p = Path(path)
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    folder = p.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=folder)
    except FileNotFoundError:
        raise FileNotFoundError(f"cannot write {p}: the folder {folder} does not exist") from None
    except NotADirectoryError:
        raise NotADirectoryError(f"cannot write {p}: {folder} is not a folder") from None
    except OSError as e:
        raise type(e)(e.errno, f"cannot write {p}: {e.strerror}") from None
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            os.chmod(tmp, _new_file_mode(p))
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as JSON to `path` atomically (see `atomic_file`)."""
    text = json.dumps(data, indent=1, allow_nan=False) + "\n"
    with atomic_file(path) as f:
        f.write(text)
