"""Replay a schedule on real tensors and check it against the simulator and eager PyTorch.

``execute(graph, schedule, model, inputs, targets)`` runs one training step the way the
schedule says: ``compute i`` evaluates node i's ATen ops (the same calls, in the same order,
as :func:`poet.graph.run_node`), ``free i`` drops node i's tensors (no reference to them is
kept anywhere, which the executor checks), ``page_out i`` writes them to a file in a flash
folder, ``page_in i`` reads them back and ``drop_flash i`` deletes the file.
``verify(...)`` runs the simulator, the executor and eager ``loss.backward()`` on copies of the
model and reports how they compare.

What the executor guarantees
----------------------------
* Gradients, loss and BatchNorm buffers equal those of eager ``loss_fn(model(x), y).backward()``
  bitwise on CPU with the same thread count, however often a node is recomputed or paged:
  - a node marked ``random`` (dropout) has torch's CPU RNG state saved before its first compute
    (the executor runs on CPU tensors; other devices' generators are not handled);
    a recompute runs under that state and then restores the current one. This is exact only if
    random nodes are first computed in id (eager) order; the executor checks the schedule for
    that before running anything and raises :class:`ReplayError` otherwise;
  - in-place writes to static buffers (``node.mutates``: running statistics,
    ``num_batches_tracked``) happen once: the first compute writes the model's buffers; a
    recompute gets scratch copies of the values those buffers had before the first compute
    (so it also reads what the first compute read);
  - gradients are taken out when their node is first computed (into the result, or into
    ``p.grad`` with ``into_model=True``, accumulating like ``backward()`` does), so freeing
    the node's tensors right after loses nothing. Gradient buffers are static memory (the
    problem's ``static_bytes`` hold one per trained parameter); a gradient that already has
    its parameter's layout hands its storage over instead of being copied, as autograd's
    AccumulateGrad does, else it is copied into a buffer of the parameter's layout.
* Paging goes through real files: each node's tensors are written as the raw bytes of their
  storages (``<folder>/node<i>.bin``) with a JSON sidecar giving dtype, shape, strides and
  storage offset (``node<i>.json``, format ``poet-flash/1``); nothing is pickled, and a page-in
  restores the exact layout. Files are written to a temporary name and renamed into place. The
  flash folder is a private sub-folder (``poet-flash-*``) of ``flash_dir`` or of the system
  temporary folder, removed when the step ends, also when it fails.

Memory accounting (what "measured" means)
-----------------------------------------
Bytes are counted by unique storage, ``untyped_storage().nbytes()``, with no allocator model
(no fragmentation, caching or alignment). RAM in use = the problem's ``static_bytes``
(parameters, gradient buffers, optimizer state, buffers, the batch: the executor does not
measure those) + the storages of every resident node's tensors. During ``compute i`` it is that
plus i's output storages plus the temporaries of i alive at the worst moment inside the node:
the executor evaluates the node's fx nodes one by one, drops every intermediate value right
after its last use inside the node (and the unused results of a multi-output op right after
that op), and sums the storages alive after each op that are neither static, nor another
node's resident tensor, nor one of i's outputs. This is the simulator's rule (output counted
for the whole compute, workspace at its peak), so for a correct extraction
``ExecutionResult.ram_trace`` equals ``solver.simulate(...).ram_trace`` instruction by
instruction. ``ExecutionResult.instant_peak_ram_bytes`` is the same count with outputs
counted only from the op that allocates them (never above the accounted peak). Two things are
deliberately outside the count and reported apart: the saved RNG states and the scratch copies
of mutated buffers for recomputed nodes (``scratch_bytes``), and the small JSON sidecars on
flash (``flash_meta_bytes``). Flash bytes are the real sizes of the data files.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import operator
import os
import shutil
import stat
import tempfile
import time
import weakref
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree

import solver
from solver import Problem, Schedule

from .graph import GraphNode, TrainingGraph

__all__ = ["execute", "verify", "prepare", "run_prepared", "Prepared", "ExecutionResult", "VerifyReport",
           "ReplayError", "FlashFolder", "resolve_problem", "structural_problem", "check_batch",
           "FLASH_FORMAT"]

log = logging.getLogger(__name__)

FLASH_FORMAT = "poet-flash/1"
_MISSING = object()


class ReplayError(ValueError):
    """The schedule, model or batch cannot be replayed on this graph; the message says why."""


# =========================================================================== the flash folder


class FlashFolder:
    """A private folder that stands in for the device's flash.

    ``FlashFolder(None)`` makes a temporary folder; ``FlashFolder(path)`` makes a sub-folder
    ``poet-flash-*`` inside ``path``, which must exist, be a folder and be writable (else
    FileNotFoundError / NotADirectoryError / PermissionError saying so). ``close()`` (or
    leaving the ``with`` block) removes the sub-folder and everything in it.

    ``write(node_id, tensors)`` stores a node's tensors and returns the bytes of the data file;
    ``read(node_id)`` returns ``(tensors, bytes read)``; ``drop(node_id)`` deletes the files.
    Tensors that share a storage are written once and share a storage again when read back.
    """

    def __init__(self, flash_dir: str | os.PathLike | None = None):
        parent = None if flash_dir is None else _check_flash_dir(flash_dir)
        try:
            self.path = Path(tempfile.mkdtemp(prefix="poet-flash-", dir=parent))
        except OSError as e:
            where = parent if parent is not None else tempfile.gettempdir()
            raise PermissionError(f"flash_dir {where}: cannot create a folder in it "
                                  f"({e.strerror or e}); give a writable folder") from None
        self._sizes: dict[int, int] = {}
        self._total = 0
        self.meta_bytes = 0

    # ---- context manager
    def __enter__(self) -> FlashFolder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Remove the folder and every file in it (idempotent)."""
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        self._sizes.clear()
        self._total = 0

    # ---- queries
    @property
    def bytes_on_flash(self) -> int:
        """Sum of the data-file sizes currently stored."""
        return self._total

    def __contains__(self, node_id: int) -> bool:
        return node_id in self._sizes

    def _files(self, node_id: int) -> tuple[Path, Path]:
        return self.path / f"node{node_id}.bin", self.path / f"node{node_id}.json"

    # ---- I/O
    def write(self, node_id: int, tensors: Mapping[str, torch.Tensor]) -> int:
        """Write ``tensors`` (fx value name -> tensor) for ``node_id``; returns data-file bytes."""
        data_path, meta_path = self._files(node_id)
        storages: list[tuple[int, torch.Tensor]] = []  # (data_ptr, uint8 view of the storage)
        index_of: dict[int, int] = {}
        entries = []
        for name, t in tensors.items():
            st = t.untyped_storage()
            key = st.data_ptr()
            if key not in index_of or st.nbytes() == 0:
                index_of[key] = len(storages)
                storages.append((key, torch.empty(0, dtype=torch.uint8, device=t.device).set_(st)))
            entries.append({"name": name, "dtype": str(t.dtype).removeprefix("torch."),
                            "shape": list(t.shape), "stride": list(t.stride()),
                            "storage_offset": t.storage_offset(), "storage": index_of[key]})
        meta = {"format": FLASH_FORMAT, "node": node_id,
                "storages": [int(u8.numel()) for _, u8 in storages], "tensors": entries}
        _write_atomic(data_path, lambda f: [f.write(u8.cpu().numpy().data) for _, u8 in storages])
        meta_text = json.dumps(meta, separators=(",", ":")).encode()
        _write_atomic(meta_path, lambda f: f.write(meta_text))
        size = os.stat(data_path).st_size
        self._total += size - self._sizes.get(node_id, 0)
        self._sizes[node_id] = size
        self.meta_bytes += len(meta_text)
        return size

    def read(self, node_id: int) -> tuple[dict[str, torch.Tensor], int]:
        """The tensors stored for ``node_id`` (exact dtype, shape, strides) and the bytes read."""
        data_path, meta_path = self._files(node_id)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            sizes = [int(s) for s in meta["storages"]]
            entries = meta["tensors"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ReplayError(f"flash file {meta_path} is missing or corrupt ({e}); "
                              f"cannot page in node {node_id}") from None
        actual = os.stat(data_path).st_size if data_path.exists() else -1
        if actual != sum(sizes):
            raise ReplayError(f"flash file {data_path} has {actual} bytes, its sidecar says "
                              f"{sum(sizes)}; cannot page in node {node_id}")
        buffers = [torch.empty(n, dtype=torch.uint8) for n in sizes]
        with open(data_path, "rb") as f:
            for buf in buffers:
                if buf.numel() and f.readinto(buf.numpy().data) != buf.numel():
                    raise ReplayError(f"flash file {data_path} ended early; cannot page in node {node_id}")
        out: dict[str, torch.Tensor] = {}
        for e in entries:
            try:
                dtype = getattr(torch, str(e["dtype"]), None)
                if not isinstance(dtype, torch.dtype):
                    raise ValueError(f"unknown dtype {e['dtype']!r}")
                t = torch.empty(0, dtype=dtype)
                t.set_(buffers[int(e["storage"])].untyped_storage(), int(e["storage_offset"]),
                       [int(d) for d in e["shape"]], [int(d) for d in e["stride"]])
                out[str(e["name"])] = t
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
                raise ReplayError(f"flash file {meta_path}: bad tensor entry {e!r} ({err}); cannot "
                                  f"page in node {node_id}") from None
        return out, actual

    def drop(self, node_id: int) -> None:
        """Delete the files of ``node_id``."""
        for p in self._files(node_id):
            p.unlink(missing_ok=True)
        self._total -= self._sizes.pop(node_id, 0)


def _check_flash_dir(flash_dir: str | os.PathLike) -> Path:
    p = Path(flash_dir)
    try:
        st = os.stat(p)
    except NotADirectoryError:
        blocker = next((a for a in reversed(p.parents) if a.exists() and not a.is_dir()), None)
        raise NotADirectoryError(f"flash_dir {p} cannot exist: {blocker or 'a parent'} is a file, "
                                 f"not a folder") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"flash_dir {p} does not exist; create the folder first "
                                f"(or leave flash_dir out to use a temporary folder)") from None
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"flash_dir {p} is a file, not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise PermissionError(f"flash_dir {p} is not writable by this user; give a writable folder")
    return p


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# =========================================================================== problem and checks


def structural_problem(graph: TrainingGraph) -> Problem:
    """A cost-free `solver.Problem` with the graph's nodes, edges, bytes and workspace.

    Enough for the simulator to check a schedule's rules and predict its memory; its
    fingerprint differs from any priced problem's.
    """
    nodes = [solver.Node(id=n.id, name=n.name, kind=n.kind, out_bytes=int(n.out_bytes),
                         compute_s=0.0, compute_j=0.0, pagein_s=0.0, pagein_j=0.0,
                         pageout_s=0.0, pageout_j=0.0, workspace_bytes=int(n.workspace_bytes))
             for n in graph.nodes]
    return Problem(nodes=nodes, edges=[tuple(e) for e in graph.edges],
                   static_bytes=int(graph.static_bytes), name=f"{graph.name}@structure")


def _check_problem_matches(graph: TrainingGraph, problem: Problem) -> None:
    if problem.T != graph.T:
        raise ReplayError(f"the problem has {problem.T} nodes but the traced graph has {graph.T}: "
                          f"they describe different models (or batch/train settings)")
    if sorted(map(tuple, problem.edges)) != sorted(map(tuple, graph.edges)):
        raise ReplayError("the problem's edges differ from the traced graph's: they describe "
                          "different models")
    for pn, gn in zip(problem.nodes, graph.nodes):
        if (pn.out_bytes, pn.workspace_bytes) != (gn.out_bytes, gn.workspace_bytes):
            raise ReplayError(f"node {gn.id} ({gn.name!r}): the problem says out_bytes={pn.out_bytes}, "
                              f"workspace_bytes={pn.workspace_bytes}, the traced graph "
                              f"{gn.out_bytes}, {gn.workspace_bytes}: different models or batch sizes")
    if problem.static_bytes != graph.static_bytes:
        raise ReplayError(f"the problem's static_bytes ({problem.static_bytes}) differ from the traced "
                          f"graph's ({graph.static_bytes}): another optimizer or train setting?")


def resolve_problem(graph: TrainingGraph, schedule: Schedule, problem: Problem | None = None,
                    device: Any = None) -> tuple[Problem, bool]:
    """The problem to check ``schedule`` against, and whether its fingerprint was checked.

    * ``problem`` given: it must describe ``graph`` (same nodes, edges, bytes), and the
      schedule's fingerprint must be its fingerprint;
    * else, with a device (``device`` or ``schedule.extra["device"]``): the graph is priced on
      that device (``poet.costs.make_problem``) and the schedule's fingerprint must match;
    * else: :func:`structural_problem` (rules and memory are checked, the fingerprint is not).

    Raises ReplayError for a schedule made for another graph, naming both fingerprints.
    """
    fp = schedule.problem_fingerprint
    if problem is not None:
        if not isinstance(problem, Problem):
            raise TypeError(f"problem must be a solver.Problem, got {type(problem).__name__}")
        _check_problem_matches(graph, problem)
        if fp is not None and fp != problem.fingerprint:
            raise ReplayError(f"the schedule was made for another problem (fingerprint {fp[:23]}...); "
                              f"the problem given has {problem.fingerprint[:23]}...")
        return problem, fp is not None
    device = device if device is not None else schedule.extra.get("device")
    if device is not None and fp is not None:
        from .costs import make_problem

        priced = make_problem(graph, device)
        if priced.fingerprint != fp:
            spec = schedule.extra.get("model_spec")
            made_for = f" (it records model {spec.get('model')!r}, batch {spec.get('batch_size')})" \
                if isinstance(spec, dict) else ""
            raise ReplayError(
                f"the schedule was made for another graph{made_for}: its fingerprint is {fp[:23]}..., "
                f"this model traced and priced on {device!r} gives {priced.fingerprint[:23]}... "
                f"(model, batch shape, train= and optimizer= must be those the schedule was solved for)")
        return priced.with_budgets(ram_budget_bytes=schedule.ram_budget_bytes), True
    return structural_problem(graph), False


def _for_problem(schedule: Schedule, problem: Problem) -> Schedule:
    """``schedule`` itself, or (for a structural problem, whose fingerprint no schedule carries)
    a copy without fingerprint, so the simulator checks its rules."""
    if schedule.problem_fingerprint in (None, problem.fingerprint):
        return schedule
    return dataclasses.replace(schedule, problem_fingerprint=None)


def check_batch(graph: TrainingGraph, inputs: Any, targets: Any) -> None:
    """Raise ReplayError unless ``inputs``/``targets`` have the traced shapes and dtypes."""
    in_leaves = pytree.tree_leaves(inputs)
    tgt_leaves = pytree.tree_leaves(targets)
    expected = [(ph, graph.fx_node(ph.fx_name).meta.get("val")) for ph in graph.placeholders
                if ph.role in ("input", "target")]
    n_in = sum(1 for ph, _ in expected if ph.role == "input")
    n_tgt = len(expected) - n_in
    if len(in_leaves) != n_in or len(tgt_leaves) != n_tgt:
        raise ReplayError(f"the graph was traced with {n_in} input and {n_tgt} target tensor(s); "
                          f"got {len(in_leaves)} and {len(tgt_leaves)}")
    for ph, val in expected:
        i = int(ph.qualname[ph.qualname.index("[") + 1: ph.qualname.index("]")])
        got = (in_leaves if ph.role == "input" else tgt_leaves)[i]
        if not isinstance(got, torch.Tensor):
            raise ReplayError(f"{ph.qualname} must be a tensor, got {type(got).__name__}")
        if val is not None and (tuple(got.shape) != tuple(val.shape) or got.dtype != val.dtype):
            raise ReplayError(f"{ph.qualname} has shape {tuple(got.shape)} and dtype {got.dtype}; the "
                              f"schedule's graph was traced for shape {tuple(val.shape)} and dtype "
                              f"{val.dtype} (a schedule fits one batch shape: solve again for this one)")


def _check_model(graph: TrainingGraph, model: torch.nn.Module) -> None:
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    for ph in graph.placeholders:
        if ph.role not in ("param", "buffer"):
            continue
        table = params if ph.role == "param" else buffers
        t = table.get(ph.qualname)
        if t is None:
            raise ReplayError(f"the model has no {ph.role} {ph.qualname!r}: the graph was traced from "
                              f"another model")
        nbytes = t.untyped_storage().nbytes()
        if nbytes != ph.nbytes:
            raise ReplayError(f"{ph.role} {ph.qualname!r} has {nbytes} bytes, the traced one had "
                              f"{ph.nbytes}: the graph was traced from another model")


# =========================================================================== the per-node plan


@dataclass
class _Step:
    name: str
    target: Any
    args: tuple
    kwargs: dict
    getitem: bool
    drop_elems: tuple[int, ...]     # results of a multi-output op nobody in the node reads
    release: tuple[str, ...]        # env values whose last use in the node is this step


@dataclass
class _NodePlan:
    node: GraphNode
    steps: list[_Step]
    wanted: list[str]               # outputs + gradient values (kept to the end of the node)
    touches_mutable: list[str]      # static values this node reads or writes that some node mutates


def _plan_node(graph: TrainingGraph, node: GraphNode, mutable: set[str]) -> _NodePlan:
    fx_names = list(node.fx_nodes)
    in_node = set(fx_names)
    wanted = list(node.outputs) + [v for v in node.grads.values() if v not in node.outputs]
    keep = set(wanted) | ({graph.loss_value} & in_node)  # the loss may be a view: keep it to the end
    fx_nodes = [graph.fx_node(n) for n in fx_names]
    last_use = {n: k for k, n in enumerate(fx_names)}  # a value nobody reads dies after its op
    for k, fx in enumerate(fx_nodes):
        for a in fx.all_input_nodes:
            if a.name in in_node:
                last_use[a.name] = max(last_use[a.name], k)
    release: list[list[str]] = [[] for _ in fx_names]
    for name, k in last_use.items():
        if name not in keep:
            release[k].append(name)
    steps = []
    for k, fx in enumerate(fx_nodes):
        if fx.op != "call_function":
            raise ReplayError(f"fx node {fx.name!r} of node {node.name!r} has op {fx.op!r}; only "
                              f"call_function nodes can run inside a node")
        users = [u for u in fx.users if u.name in in_node]
        drop: tuple[int, ...] = ()
        val = fx.meta.get("val")
        if isinstance(val, (tuple, list)) and fx.name not in keep and all(u.target is operator.getitem for u in users):
            taken = {u.args[1] for u in users}
            drop = tuple(i for i in range(len(val)) if i not in taken)
        steps.append(_Step(fx.name, fx.target, fx.args, dict(fx.kwargs), fx.target is operator.getitem,
                           drop, tuple(release[k])))
    touches = [s for s in dict.fromkeys(list(node.static_inputs) + list(node.mutates)) if s in mutable]
    return _NodePlan(node, steps, wanted, touches)


def _graph_plans(graph: TrainingGraph) -> list[_NodePlan]:
    cached = graph.extra.get("_replay_plans")
    if cached is not None and len(cached) == graph.T:
        return cached
    mutable = {m for n in graph.nodes for m in n.mutates}
    plans = [_plan_node(graph, n, mutable) for n in graph.nodes]
    graph.extra["_replay_plans"] = plans
    return plans


# =========================================================================== storage bookkeeping


def _tensors_of(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors_of(v)]
    return []


class _Live:
    """Reference-counted set of storages (keyed by data pointer) with their byte total.

    ``add`` returns the keys it counted, which ``remove`` takes back (so a value's storages are
    looked up once). Storages in ``excluded`` and empty ones are not counted.
    """

    def __init__(self, excluded: set[int]):
        self.excluded = excluded
        self.count: dict[int, int] = {}
        self.size: dict[int, int] = {}
        self.born: dict[int, int] = {}
        self.total = 0

    def add(self, value: Any, step: int = -1) -> list[int]:
        keys = []
        for t in _tensors_of(value):
            st = t.untyped_storage()
            key = st.data_ptr()
            if key in self.excluded:
                continue
            nbytes = st.nbytes()
            if nbytes == 0:
                continue
            c = self.count.get(key, 0)
            if c == 0:
                self.size[key] = nbytes
                self.total += nbytes
                self.born[key] = step
            self.count[key] = c + 1
            keys.append(key)
        return keys

    def remove(self, keys: list[int]) -> None:
        for key in keys:
            c = self.count[key] - 1
            if c == 0:
                del self.count[key]
                self.total -= self.size.pop(key)
            else:
                self.count[key] = c


def _storage_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages among ``tensors``."""
    seen: dict[int, int] = {}
    for t in _tensors_of(list(tensors)):
        st = t.untyped_storage()
        seen[st.data_ptr() if st.nbytes() else id(t)] = st.nbytes()
    return sum(seen.values())


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over each tensor's name, dtype, shape and element bytes (in logical order)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


# =========================================================================== results


@dataclass
class ExecutionResult:
    """What one executed step produced and held.

    ``loss``: the loss (a detached 0-dim tensor). ``grads``: parameter qualname -> gradient
    (empty when ``into_model=True``, where they went to ``p.grad``). ``ram_trace[k]``: RAM in
    use during instruction k by the accounting in the module docstring (static bytes from the
    problem + measured storages); ``peak_ram_bytes`` its maximum (at least ``static_bytes``);
    ``instant_peak_ram_bytes``: the same with outputs counted from their allocation.
    ``flash_trace[k]``: data bytes on flash after instruction k. ``flash_bytes_written`` /
    ``flash_bytes_read``: real data-file bytes written by page-outs / read by page-ins.
    ``node_out_bytes`` / ``node_workspace_bytes``: per node id, the measured storages of its
    outputs and the peak of its temporaries (largest over its computes). ``frees_not_released``:
    frees after which a tensor object of the node was still alive (0 when nothing leaks).
    ``value_mismatches``: with ``check_values=True``, the instructions whose recompute or
    page-in gave other bytes than the first compute.
    """

    loss: torch.Tensor
    grads: dict[str, torch.Tensor]
    static_bytes: int
    ram_trace: list[int]
    peak_ram_bytes: int
    peak_index: int
    instant_peak_ram_bytes: int
    flash_trace: list[int]
    peak_flash_bytes: int
    flash_bytes_written: int
    flash_bytes_read: int
    flash_meta_bytes: int
    node_out_bytes: dict[int, int]
    node_workspace_bytes: dict[int, int]
    n_compute: int
    n_recompute: int
    n_page_out: int
    n_page_in: int
    frees_not_released: int
    scratch_bytes: int
    seconds: float
    compute_seconds: float
    paging_seconds: float
    value_mismatches: list[str] = field(default_factory=list)


# =========================================================================== the executor


def execute(graph: TrainingGraph, schedule: Schedule, model: torch.nn.Module, inputs: Any, targets: Any, *,
            flash_dir: str | os.PathLike | None = None, problem: Problem | None = None,
            into_model: bool = False, check_values: bool = False) -> ExecutionResult:
    """Run one training step of ``model`` on ``inputs``/``targets`` in the order ``schedule`` gives.

    ``graph`` is the step traced by :func:`poet.extract` for this model and batch shape. The
    schedule is checked before anything runs: against ``problem`` when given (it must describe
    ``graph`` and carry the schedule's fingerprint), else against the graph's structure (see
    :func:`resolve_problem`), by the simulator's rules; random nodes must be first computed in
    id order. Violations raise ScheduleError / ReplayError and nothing is executed.

    Like eager training, the step updates the model's buffers (BatchNorm statistics) in place
    and advances torch's CPU RNG as eager dropout would. Parameters are not changed. Gradients
    go to ``ExecutionResult.grads`` or, with ``into_model=True``, into ``p.grad`` (added to an
    existing ``.grad`` as ``backward()`` does). ``flash_dir``: where the flash folder is made
    (default: the system temporary folder); it is removed afterwards. ``check_values=True``
    hashes each node's tensors at their first compute and compares recomputes and page-ins to
    it (slower; :func:`verify` turns it on).
    """
    prepared = prepare(graph, schedule, problem)
    return run_prepared(prepared, model, inputs, targets, flash_dir=flash_dir, into_model=into_model,
                        check_values=check_values)


@dataclass
class Prepared:
    """A schedule checked against a graph, ready to run many times (see :func:`prepare`)."""

    graph: TrainingGraph
    schedule: Schedule
    problem: Problem
    fingerprint_checked: bool
    plans: list
    recomputed: set[int]
    pages: bool


def prepare(graph: TrainingGraph, schedule: Schedule, problem: Problem | None = None,
            device: Any = None) -> Prepared:
    """Check ``schedule`` against ``graph`` once (see :func:`execute`) for repeated runs.

    Raises TypeError for a non-Schedule, ReplayError for a schedule of another graph or one whose
    random nodes leave eager order, ScheduleError (from the simulator) for a broken rule.
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a solver.Schedule (poet.Schedule.load(path)), got "
                        f"{type(schedule).__name__}")
    problem, checked = resolve_problem(graph, schedule, problem, device)
    solver.simulate(problem, _for_problem(schedule, problem), check_budgets=False)  # raises ScheduleError
    first, recomputed = _first_computes(schedule, graph.T)
    _check_eager_order(graph, first, recomputed)
    pages = any(op == "page_out" for op, _ in schedule.instructions)
    return Prepared(graph, schedule, problem, checked, _graph_plans(graph), recomputed, pages)


def run_prepared(prepared: Prepared, model: torch.nn.Module, inputs: Any, targets: Any, *,
                 flash_dir: str | os.PathLike | None = None, into_model: bool = False,
                 check_values: bool = False) -> ExecutionResult:
    """Run a schedule checked by :func:`prepare` (the arguments are those of :func:`execute`)."""
    graph = prepared.graph
    check_batch(graph, inputs, targets)
    _check_model(graph, model)
    flash = FlashFolder(flash_dir) if (prepared.pages or flash_dir is not None) else None
    try:
        with torch.no_grad():
            return _Executor(graph, prepared.plans, prepared.problem, model, inputs, targets, flash,
                             prepared.recomputed, into_model, check_values).run(prepared.schedule)
    finally:
        if flash is not None:
            flash.close()


def _first_computes(schedule: Schedule, T: int) -> tuple[dict[int, int], set[int]]:
    first: dict[int, int] = {}
    seen: set[int] = set()
    recomputed: set[int] = set()
    for k, (op, i) in enumerate(schedule.instructions):
        if op != "compute":
            continue
        if i in seen:
            recomputed.add(i)
        else:
            seen.add(i)
            first[i] = k
    return first, recomputed


def _check_eager_order(graph: TrainingGraph, first: dict[int, int], recomputed: set[int]) -> None:
    """Random nodes, and nodes touching the same mutated buffer, must first run in id order."""
    groups: dict[str, list[int]] = {"random numbers": [n.id for n in graph.nodes if n.random]}
    mutable = {m for n in graph.nodes for m in n.mutates}
    for n in graph.nodes:
        for s in set(n.static_inputs) | set(n.mutates):
            if s in mutable:
                groups.setdefault(f"buffer {s}", []).append(n.id)
    for what, ids in groups.items():
        ids = sorted(set(ids))
        order = sorted(ids, key=first.__getitem__)
        if order != ids:
            early = next(x for x, y in zip(order, ids) if x != y)
            raise ReplayError(
                f"the schedule first computes the nodes that use {what} in the order "
                f"{[graph.nodes[i].name for i in order]}, not in eager (id) order: node "
                f"{graph.nodes[early].name!r} comes too early. The executor reproduces eager results "
                f"only when these nodes are first computed in id order")


class _Executor:
    """State of one executed step (see :func:`execute`)."""

    def __init__(self, graph, plans, problem, model, inputs, targets, flash, recomputed, into_model,
                 check_values):
        self.graph = graph
        self.plans = plans
        self.problem = problem
        self.model = model
        self.flash: FlashFolder | None = flash
        self.recomputed = recomputed
        self.into_model = into_model
        self.check_values = check_values
        self.static = graph.static_values(model, inputs, targets)
        self.static_keys = {t.untyped_storage().data_ptr() for t in self.static.values()
                            if isinstance(t, torch.Tensor)}
        self.params = dict(model.named_parameters())
        self.available: dict[str, torch.Tensor] = {}      # output name -> tensor, resident nodes
        self.resident: dict[int, dict[str, torch.Tensor]] = {}
        self.resident_live = _Live(self.static_keys)      # unique storages of resident tensors
        self.resident_keys: dict[int, list[int]] = {}
        self.computed: set[int] = set()
        self.rng_states: dict[int, torch.Tensor] = {}
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.digests: dict[int, str] = {}
        self.grads: dict[str, torch.Tensor] = {}
        self.loss: torch.Tensor | None = None
        self.node_out: dict[int, int] = {}
        self.node_ws: dict[int, int] = {}
        self.instant_peak = problem.static_bytes
        self.compute_s = 0.0
        self.paging_s = 0.0
        self.not_released = 0
        self.mismatches: list[str] = []

    # ---- the instruction loop
    def run(self, schedule: Schedule) -> ExecutionResult:
        start = time.perf_counter()
        static = self.problem.static_bytes
        ram_trace: list[int] = []
        flash_trace: list[int] = []
        written = read = n_out = n_in = n_compute = 0
        for k, (op, i) in enumerate(schedule.instructions):
            if op == "compute":
                t0 = time.perf_counter()
                held = static + self.resident_live.total  # operands and everything else resident
                during = held + self._compute(k, i)       # + output + peak temporaries
                self.compute_s += time.perf_counter() - t0
                n_compute += 1
            elif op == "free":
                during = static + self.resident_live.total
                self._free(i)
            elif op == "page_out":
                t0 = time.perf_counter()
                written += self.flash.write(i, self.resident[i])
                self.paging_s += time.perf_counter() - t0
                n_out += 1
                during = static + self.resident_live.total
            elif op == "page_in":
                read += self._page_in(k, i)
                n_in += 1
                during = static + self.resident_live.total
            else:  # drop_flash
                self.flash.drop(i)
                during = static + self.resident_live.total
            ram_trace.append(during)
            flash_trace.append(self.flash.bytes_on_flash if self.flash is not None else 0)
        # the step is over: whatever is still resident goes (like eager's graph teardown)
        for i in list(self.resident):
            self._free(i)
        peak = max([static, *ram_trace])
        peak_index = ram_trace.index(peak) if peak in ram_trace and peak > static else -1
        assert self.loss is not None  # the simulator checked that every node ran
        scratch = sum(_storage_bytes(s.values()) for s in self.snapshots.values()) + \
            sum(s.numel() * s.element_size() for s in self.rng_states.values())
        return ExecutionResult(
            loss=self.loss, grads=self.grads, static_bytes=static, ram_trace=ram_trace,
            peak_ram_bytes=peak, peak_index=peak_index, instant_peak_ram_bytes=self.instant_peak,
            flash_trace=flash_trace, peak_flash_bytes=max(flash_trace, default=0),
            flash_bytes_written=written, flash_bytes_read=read,
            flash_meta_bytes=self.flash.meta_bytes if self.flash is not None else 0,
            node_out_bytes=self.node_out, node_workspace_bytes=self.node_ws, n_compute=n_compute,
            n_recompute=n_compute - len(self.computed), n_page_out=n_out, n_page_in=n_in,
            frees_not_released=self.not_released, scratch_bytes=scratch,
            seconds=time.perf_counter() - start, compute_seconds=self.compute_s,
            paging_seconds=self.paging_s, value_mismatches=self.mismatches)

    # ---- residency
    def _make_resident(self, i: int, tensors: dict[str, torch.Tensor]) -> None:
        self.resident[i] = tensors
        self.available.update(tensors)
        self.resident_keys[i] = self.resident_live.add(list(tensors.values()))

    def _free(self, i: int) -> None:
        tensors = self.resident.pop(i)
        for name in tensors:
            self.available.pop(name, None)
        self.resident_live.remove(self.resident_keys.pop(i))
        refs = [weakref.ref(t) for t in tensors.values()]
        del tensors
        self.not_released += sum(1 for r in refs if r() is not None)

    def _page_in(self, k: int, i: int) -> int:
        t0 = time.perf_counter()
        tensors, nbytes = self.flash.read(i)
        self.paging_s += time.perf_counter() - t0
        self._make_resident(i, tensors)
        if self.check_values and _digest(tensors) != self.digests.get(i):
            self.mismatches.append(f"instruction {k} (page_in {i}): bytes differ from the first compute")
        return nbytes

    # ---- compute
    def _compute(self, k: int, i: int) -> int:
        """Run node i; return its output bytes + peak temporaries (the simulator's during-compute add)."""
        plan = self.plans[i]
        node = plan.node
        first = i not in self.computed
        overrides: dict[str, torch.Tensor] = {}
        saved_rng = None
        if first:
            if i in self.recomputed:
                if node.random:
                    self.rng_states[i] = torch.get_rng_state()
                if plan.touches_mutable:
                    self.snapshots[i] = {s: self.static[s].clone() for s in plan.touches_mutable}
        else:
            if node.random:
                saved_rng = torch.get_rng_state()
                torch.set_rng_state(self.rng_states[i])
            overrides = {s: t.clone() for s, t in self.snapshots.get(i, {}).items()}
        excluded = self.static_keys | set(self.resident_live.count) | \
            {t.untyped_storage().data_ptr() for t in overrides.values()}
        try:
            env, totals, live = self._evaluate(plan, overrides, excluded)
        finally:
            if saved_rng is not None:
                torch.set_rng_state(saved_rng)
        outputs = {name: env[name] for name in node.outputs}
        # outputs are counted from the start of the compute (the simulator's rule); temporaries
        # are whatever else was alive after each op
        out_keys = {}
        for t in outputs.values():
            st = t.untyped_storage()
            if st.nbytes() and st.data_ptr() not in excluded:
                out_keys[st.data_ptr()] = st.nbytes()
        out_bytes = sum(out_keys.values())
        births = sorted((live.born.get(key, 0), size) for key, size in out_keys.items())
        workspace = 0
        born_bytes, b = 0, 0
        for s, total in enumerate(totals):
            while b < len(births) and births[b][0] <= s:
                born_bytes += births[b][1]
                b += 1
            workspace = max(workspace, total - born_bytes)
            self.instant_peak = max(self.instant_peak, self.problem.static_bytes + self.resident_live.total + total)
        self.node_out.setdefault(i, out_bytes)
        self.node_ws[i] = max(self.node_ws.get(i, 0), workspace)
        if first:
            self.computed.add(i)
            self._capture(node, env)
            if self.check_values:
                self.digests[i] = _digest(outputs)
        elif self.check_values and _digest(outputs) != self.digests.get(i):
            self.mismatches.append(f"instruction {k} (compute {i}, node {node.name!r}): recompute "
                                   f"differs from the first compute")
        del env, live
        self._make_resident(i, outputs)
        return out_bytes + workspace

    def _evaluate(self, plan: _NodePlan, overrides: dict[str, torch.Tensor], excluded: set[int]):
        env: dict[str, Any] = {}
        available = self.available
        static = self.static
        node = plan.node

        def lookup(a: torch.fx.Node) -> Any:
            name = a.name
            v = env.get(name, _MISSING)
            if v is _MISSING:
                v = overrides.get(name, _MISSING)
                if v is _MISSING:
                    v = available.get(name, _MISSING)
                    if v is _MISSING:
                        v = static.get(name, _MISSING)
                        if v is _MISSING:
                            raise ReplayError(f"node {node.name!r} (id {node.id}) needs fx value {name!r}, "
                                              f"which is neither resident nor static")
            return v

        live = _Live(excluded)
        keys: dict[str, list[int]] = {}
        totals: list[int] = []
        map_arg = torch.fx.node.map_arg
        for s, step in enumerate(plan.steps):
            args = map_arg(step.args, lookup)
            if step.getitem:
                value = args[0][args[1]]
            else:
                kwargs = map_arg(step.kwargs, lookup) if step.kwargs else {}
                value = step.target(*args, **kwargs)
            del args
            if step.drop_elems:  # results nobody reads: counted during the op, dropped right after
                dropped = live.add([value[j] for j in step.drop_elems], s)
                value = tuple(None if j in step.drop_elems else v for j, v in enumerate(value))
                keys[step.name] = live.add(value, s)
                totals.append(live.total)
                live.remove(dropped)
            else:
                keys[step.name] = live.add(value, s)
                totals.append(live.total)
            env[step.name] = value
            for name in step.release:
                del env[name]
                live.remove(keys.pop(name))
        return env, totals, live

    def _capture(self, node: GraphNode, env: dict[str, Any]) -> None:
        """Copy out the gradients (and the loss) a node produces, at its first compute."""
        for qualname, value_name in node.grads.items():
            value = env[value_name] if value_name in env else self.available[value_name]
            param = self.params[qualname]
            if self.into_model and param.grad is not None:
                param.grad += value  # what backward() does with an existing .grad
                continue
            if _same_layout(value, param):
                g = value.detach()  # take the storage over (as AccumulateGrad does): no copy
            else:
                g = torch.empty_like(param, requires_grad=False)
                g.copy_(value)
            if self.into_model:
                param.grad = g
            else:
                self.grads[qualname] = g
        loss_name = self.graph.loss_value
        if loss_name in env and self.loss is None:
            self.loss = env[loss_name].detach().clone()


def _same_layout(value: torch.Tensor, param: torch.Tensor) -> bool:
    """True when ``value`` can serve as ``param``'s gradient as it is: same dtype, shape and
    strides, and it owns its whole storage."""
    return (value.dtype == param.dtype and value.shape == param.shape and value.stride() == param.stride()
            and value.storage_offset() == 0
            and value.untyped_storage().nbytes() == value.numel() * value.element_size())


# =========================================================================== verify


@dataclass
class VerifyReport:
    """The simulator, the executor and eager PyTorch compared on one step.

    ``passed`` is True when every check holds; ``failures`` says which did not, in words.
    Memory: ``predicted_peak_bytes`` (simulator) vs ``measured_peak_bytes`` (executor, same
    accounting) and ``trace_equal`` (the two RAM traces agree at every instruction;
    ``first_trace_mismatch`` is the first instruction where they do not, or -1). Flash:
    bytes the schedule pages out / in (sum of out_bytes) vs real data-file bytes. Numbers:
    ``max_abs_grad_diff`` over all trained parameters (worst in ``worst_param``),
    ``grad_scale`` = largest |eager gradient|, ``max_rel_grad_diff`` = diff / scale,
    ``bitwise`` (loss, gradients and buffers identical), ``loss``/``eager_loss``/``loss_diff``,
    ``max_buffer_diff`` (BatchNorm running statistics etc. after the step), ``rng_equal``
    (torch's RNG ends in the same state). Cost: the simulator's ``energy_j`` and ``time_s``
    (device predictions; zero when no device was known) next to the measured CPU seconds of
    the executor and of eager.
    """

    passed: bool
    failures: list[str]
    strategy: str
    fingerprint_checked: bool
    n_instructions: int
    n_recompute: int
    n_page_out: int
    n_page_in: int
    static_bytes: int
    predicted_peak_bytes: int
    measured_peak_bytes: int
    instant_peak_bytes: int
    trace_equal: bool
    first_trace_mismatch: int
    predicted_flash_written: int
    measured_flash_written: int
    predicted_flash_read: int
    measured_flash_read: int
    predicted_peak_flash: int
    measured_peak_flash: int
    loss: float
    eager_loss: float
    loss_diff: float
    max_abs_grad_diff: float
    grad_scale: float
    max_rel_grad_diff: float
    worst_param: str
    grad_tolerance: float
    max_buffer_diff: float
    rng_equal: bool
    bitwise: bool
    value_mismatches: list[str]
    frees_not_released: int
    over_budget: list[str]
    energy_j: float
    time_s: float
    executor_seconds: float
    eager_seconds: float

    def to_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)

    def lines(self) -> list[str]:
        """Human-readable summary, one check per line (the CLI prints these)."""
        return [
            f"verify {'PASSED' if self.passed else 'FAILED'}: {self.strategy} schedule, "
            f"{self.n_instructions} instructions, {self.n_recompute} recomputes, "
            f"{self.n_page_out} page-outs, {self.n_page_in} page-ins",
            f"peak RAM   predicted {self.predicted_peak_bytes} B ({_size(self.predicted_peak_bytes)}), "
            f"measured {self.measured_peak_bytes} B, trace {'equal' if self.trace_equal else 'differs'}",
            f"flash      written {self.measured_flash_written} B (schedule {self.predicted_flash_written} B), "
            f"read {self.measured_flash_read} B (schedule {self.predicted_flash_read} B)",
            f"gradients  max |diff| {self.max_abs_grad_diff:.3g} (scale {self.grad_scale:.3g}, "
            f"relative {self.max_rel_grad_diff:.3g}, tolerance {self.grad_tolerance:.3g}); "
            f"{'bitwise equal' if self.bitwise else 'not bitwise equal'}",
            f"loss       {self.loss:.8g} vs eager {self.eager_loss:.8g}; buffers max |diff| "
            f"{self.max_buffer_diff:.3g}; RNG state {'equal' if self.rng_equal else 'differs'}",
            f"cost       predicted {self.energy_j:.6g} J, {self.time_s:.6g} s on the device; CPU "
            f"{self.executor_seconds * 1e3:.1f} ms executor vs {self.eager_seconds * 1e3:.1f} ms eager",
            *[f"FAIL: {f}" for f in self.failures],
        ]


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def verify(graph: TrainingGraph, schedule: Schedule, model: torch.nn.Module, inputs: Any, targets: Any, *,
           problem: Problem | None = None, flash_dir: str | os.PathLike | None = None,
           loss_fn: Any = None, atol: float = 0.0, rtol: float = 1e-6, device: Any = None) -> VerifyReport:
    """Check ``schedule`` three ways: simulator, executor on real tensors, eager PyTorch.

    The problem comes from :func:`resolve_problem` (``problem``, else the graph priced on
    ``device`` or on the schedule's recorded device, else the graph's structure alone); a
    schedule made for another graph raises ReplayError before anything runs. The executor
    (with ``check_values=True``) and ``loss_fn(model(*inputs), targets).backward()`` each run on
    a deep copy of ``model`` from the same RNG state with the current thread count; ``model``,
    its ``.grad`` fields and torch's RNG state are left as they were.

    ``passed`` requires: measured RAM trace equal to the simulator's at every instruction (so
    equal peaks), flash bytes written/read equal to the schedule's page-outs/page-ins, gradient
    difference <= ``atol + rtol * grad_scale``, loss and buffer differences within the same
    tolerance (relative to their own scale), equal RNG end states, recomputes and page-ins
    byte-identical to first computes, every free releasing its tensors, and no budget exceeded.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, tol in (("atol", atol), ("rtol", rtol)):
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0 or tol == float("inf"):
            raise ValueError(f"{name} must be a finite number >= 0, got {tol!r}")
    loss_fn = loss_fn if loss_fn is not None else graph.extra.get("loss_fn")
    if not callable(loss_fn):
        raise ReplayError("verify needs the loss function for the eager reference step: pass "
                          "loss_fn=..., or a graph made by poet.extract (which records it)")
    prepared = prepare(graph, schedule, problem, device)
    problem, fp_checked = prepared.problem, prepared.fingerprint_checked
    sim = solver.simulate(problem, _for_problem(schedule, problem), check_budgets=False)
    rng0 = torch.get_rng_state()
    try:
        ex_model = copy.deepcopy(model)
        res = run_prepared(prepared, ex_model, inputs, targets, flash_dir=flash_dir, check_values=True)
        rng_ex = torch.get_rng_state()
        torch.set_rng_state(rng0)
        eager_model = copy.deepcopy(model)
        eager_loss, eager_grads, eager_s = _eager_step(graph, eager_model, loss_fn, inputs, targets)
        rng_eager = torch.get_rng_state()
    finally:
        torch.set_rng_state(rng0)

    failures: list[str] = []
    # gradients
    max_diff, scale, worst, bitwise = 0.0, 0.0, "", True
    for q in graph.trainable:
        if q not in eager_grads and q not in res.grads:
            continue
        e = eager_grads.get(q)
        g = res.grads.get(q)
        if e is None or g is None:
            failures.append(f"gradient of {q!r} exists in {'eager' if g is None else 'the executor'} only")
            bitwise = False
            continue
        scale = max(scale, float(e.abs().max()) if e.numel() else 0.0)
        d = float((g.double() - e.double()).abs().max()) if e.numel() else 0.0
        bitwise &= bool(torch.equal(g, e))
        if d > max_diff or not worst:
            max_diff, worst = max(max_diff, d), q if d >= max_diff else worst
    tol = atol + rtol * scale
    if max_diff > tol:
        failures.append(f"gradients differ from eager by {max_diff:.3g} (parameter {worst!r}) > "
                        f"tolerance {tol:.3g}")
    loss_ex, loss_eg = float(res.loss), float(eager_loss)
    loss_diff = abs(loss_ex - loss_eg)
    bitwise &= bool(torch.equal(res.loss, eager_loss.detach()))
    if loss_diff > atol + rtol * max(1.0, abs(loss_eg)):
        failures.append(f"loss {loss_ex!r} differs from eager {loss_eg!r}")
    buf_diff = 0.0
    eager_bufs = dict(eager_model.named_buffers())
    for name, b in ex_model.named_buffers():
        other = eager_bufs[name]
        bitwise &= bool(torch.equal(b, other))
        if b.numel():
            buf_diff = max(buf_diff, float((b.double() - other.double()).abs().max()))
    buf_scale = max([float(b.abs().max()) for b in eager_bufs.values() if b.numel() and b.is_floating_point()],
                    default=1.0)
    if buf_diff > atol + rtol * max(1.0, buf_scale):
        failures.append(f"buffers (BatchNorm statistics) differ from eager by {buf_diff:.3g}")
    rng_equal = bool(torch.equal(rng_ex, rng_eager))
    if not rng_equal:
        failures.append("torch's RNG ends in another state than after eager (random numbers were "
                        "drawn differently)")
    # memory and flash
    mismatch = next((k for k, (a, b) in enumerate(zip(res.ram_trace, sim.ram_trace)) if a != b), -1)
    trace_equal = mismatch < 0 and len(res.ram_trace) == len(sim.ram_trace)
    if not trace_equal:
        op, i = schedule.instructions[mismatch]
        failures.append(f"measured RAM differs from the simulator's at instruction {mismatch} ({op} {i}, "
                        f"node {graph.nodes[i].name!r}): {res.ram_trace[mismatch]} vs "
                        f"{sim.ram_trace[mismatch]} bytes")
    if res.peak_ram_bytes != sim.peak_ram_bytes:
        failures.append(f"measured peak {res.peak_ram_bytes} B != predicted {sim.peak_ram_bytes} B")
    if res.flash_bytes_written != sim.bytes_paged_out or res.flash_bytes_read != sim.bytes_paged_in:
        failures.append(f"flash bytes written/read {res.flash_bytes_written}/{res.flash_bytes_read} != "
                        f"schedule's page-outs/page-ins {sim.bytes_paged_out}/{sim.bytes_paged_in}")
    if res.value_mismatches:
        failures.append(f"{len(res.value_mismatches)} recompute/page-in(s) gave other bytes than the "
                        f"first compute: {res.value_mismatches[0]}")
    if res.frees_not_released:
        failures.append(f"{res.frees_not_released} freed tensor(s) were still referenced")
    failures += [f"over budget: {o}" for o in sim.over_budget]
    return VerifyReport(
        passed=not failures, failures=failures, strategy=schedule.strategy, fingerprint_checked=fp_checked,
        n_instructions=len(schedule.instructions), n_recompute=sim.n_recompute, n_page_out=sim.n_page_out,
        n_page_in=sim.n_page_in, static_bytes=problem.static_bytes,
        predicted_peak_bytes=sim.peak_ram_bytes, measured_peak_bytes=res.peak_ram_bytes,
        instant_peak_bytes=res.instant_peak_ram_bytes, trace_equal=trace_equal,
        first_trace_mismatch=mismatch, predicted_flash_written=sim.bytes_paged_out,
        measured_flash_written=res.flash_bytes_written, predicted_flash_read=sim.bytes_paged_in,
        measured_flash_read=res.flash_bytes_read, predicted_peak_flash=sim.peak_flash_bytes,
        measured_peak_flash=res.peak_flash_bytes, loss=loss_ex, eager_loss=loss_eg, loss_diff=loss_diff,
        max_abs_grad_diff=max_diff, grad_scale=scale, max_rel_grad_diff=max_diff / scale if scale else 0.0,
        worst_param=worst, grad_tolerance=tol, max_buffer_diff=buf_diff, rng_equal=rng_equal,
        bitwise=bitwise, value_mismatches=list(res.value_mismatches),
        frees_not_released=res.frees_not_released, over_budget=list(sim.over_budget),
        energy_j=sim.energy_j, time_s=sim.time_s, executor_seconds=res.seconds, eager_seconds=eager_s)


def _eager_step(graph: TrainingGraph, model: torch.nn.Module, loss_fn, inputs, targets):
    """``loss_fn(model(*inputs), targets).backward()`` with only the graph's parameters trained."""
    trainable = set(graph.trainable)
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
        p.grad = None
    xs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    t0 = time.perf_counter()
    loss = loss_fn(model(*xs), targets)
    loss.backward()
    seconds = time.perf_counter() - t0
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, seconds
