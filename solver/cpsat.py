"""The optional MILP backends OR-Tools CP-SAT and SCIP, and a CP-SAT interval model of remat.

`backends.run(prob, "cpsat" | "scip", ...)` calls `run_cpsat` / `run_scip`; they take the same
arguments and return the same `BackendResult` as the other backends (values left on the PuLP
variables). `remat_intervals` is CP-SAT's own model of the recompute-only strategy (intervals in
the style of Moccasin), independent of the staged MILP.

CP-SAT: the PuLP model is written as MPS (renamed columns, in the order PuLP lists them), read by
OR-Tools' model_builder and solved with the "sat" engine: `threads` workers, the time limit, the
relative and absolute gaps, the MIP start as a hint and the cutoff as a row on the objective.
CP-SAT turns continuous columns into integers itself (its MIP loader; `mip_var_scaling` sets the
grid, 512 steps per unit here unless options say otherwise: at its default of 1 it declared the
feasible ResNet-18 MILP infeasible): its INFEASIBLE and its bound are the rounded model's, no proof
for the MILP, so a CP-SAT run is at best "feasible" with no bound (the trajectory keeps its own
bounds). Its incumbents come from its log lines, read as it runs (through a pipe on file
descriptor 1). A relaxation (relax=True) is solved with GLOP.

SCIP: pulp.SCIP_PY with the objective limit as cutoff, an event handler for the trajectory, the
stop callback and interrupts, and the relaxation by turning every column continuous. PuLP's SCIP
interface has no parallel mode: SCIP runs on one thread whatever `threads` says.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import pulp

from . import backends
from .backends import BackendResult
from .options import check_solve_options
from .problem import Problem
from .schedule import Schedule
from .simulate import SimReport, simulate

# "#3  1.25s best:0.0123 next:[0.01,0.0122] ..." and "#Bound 2.0s best:... next:[lb,ub]"
_CPSAT_LINE = re.compile(r"^#(?P<kind>\w+)\s+(?P<t>[0-9.]+)s\s+best:(?P<best>\S+)\s+"
                         r"next:\[(?P<lb>[^,\]]+)")


def _finite(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def run_cpsat(prob, *, time_limit_s, threads, gap_rel, gap_abs, start, cutoff, relax, verbose,
              progress, options, stop=None) -> BackendResult:
    from ortools.linear_solver.python import model_builder as mb
    backends._INTERRUPT.clear()
    tmp = tempfile.mkdtemp(prefix="poet-cpsat-")
    backends._live_dirs.add(tmp)
    try:
        path = os.path.join(tmp, "model.mps")
        vs, vnames, _, _ = prob.writeMPS(path, rename=1)
        model = mb.Model()
        model.import_from_mps_file(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        backends._live_dirs.discard(tmp)
    cols = [model.var_from_index(k) for k in range(model.num_variables)]
    if len(cols) != len(vs) or any(c.name != vnames[v.name] for c, v in zip(cols, vs)):
        raise RuntimeError("cpsat: the MPS columns read back differ from the PuLP model's")
    const = float(prob.objective.constant or 0.0)
    if relax:
        for c in cols:
            c.is_integral = False
        return _finish(prob, vs, cols, mb, model, "glop", time_limit_s, "", None, [], relax)
    if start:
        for c, v in zip(cols, vs):
            if v.varValue is not None:
                model.add_hint(c, float(v.varValue))
    if cutoff is not None:
        index = {v.name: k for k, v in enumerate(vs)}
        terms = [(cols[index[v.name]], float(a)) for v, a in prob.objective.items()]
        model.add(mb.LinearExpr.weighted_sum([t for t, _ in terms], [a for _, a in terms])
                  <= float(cutoff) - const)
    params = {"relative_gap_limit": gap_rel, "log_search_progress": "true",
              "mip_var_scaling": 512,
              **({"absolute_gap_limit": gap_abs} if gap_abs is not None else {}),
              **({"num_workers": threads} if threads is not None else {}), **options}
    text = ",".join(f"{k}:{v}" for k, v in params.items())
    traj: list[tuple[float, float | None, float | None]] = []
    return _finish(prob, vs, cols, mb, model, "sat", time_limit_s, text,
                   _cpsat_watch(traj, time.perf_counter() + time_limit_s, verbose, progress,
                                stop, const), traj, relax, verbose)


def _cpsat_watch(traj, deadline, verbose, progress, stop, const):
    """A reader of CP-SAT's log lines: each progress line becomes a trajectory point (in PuLP's
    objective, the constant added back); it stops the solve 5 s past the deadline, on an
    interrupt request or when stop says so. Returns (on_line, holder); holder[0] is the solver."""
    holder: list = [None]

    def on_line(ln: str) -> None:
        m = _CPSAT_LINE.match(ln)
        if not m:
            return
        best, lb = _finite(m.group("best")), _finite(m.group("lb"))
        point = (float(m.group("t")), None if best is None else best + const,
                 None if lb is None else lb + const)
        if not traj or traj[-1][1:] != point[1:]:
            traj.append(point)
            if progress is not None and m.group("kind").isdigit() and best is not None:
                progress(f"cpsat: incumbent {point[1]:.6g}, bound {point[2]} at {point[0]:.1f} s")
        if holder[0] is not None and (
                backends._INTERRUPT.is_set() or time.perf_counter() > deadline + 5.0
                or (stop is not None and stop(*point))):
            holder[0].stop_search()
    return on_line, holder


def _solve_reading_log(solver, model, on_line, verbose: bool):
    """solver.solve(model) with file descriptor 1 sent through a pipe whose lines a thread
    hands to on_line (and echoes to the real stdout if verbose): this OR-Tools build cannot take
    a Python log callback, and CP-SAT releases the GIL while it searches. Anything else the
    process writes to fd 1 meanwhile goes through the same pipe."""
    sys.stdout.flush()
    saved = os.dup(1)
    r, w = os.pipe()
    echo = os.fdopen(os.dup(saved), "w") if verbose else None

    def pump():
        with os.fdopen(r, "r", errors="replace") as f:
            for line in f:
                if echo is not None:
                    echo.write(line)
                on_line(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    os.dup2(w, 1)
    os.close(w)
    try:
        return solver.solve(model)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)       # closes the pipe's last write end: the reader sees its end
        os.close(saved)
        reader.join(timeout=10.0)
        if echo is not None:
            echo.close()


def _finish(prob, vs, cols, mb, model, engine, time_limit_s, params, watch, traj, relax,
            verbose=False) -> BackendResult:
    """Solve `model` with `engine` and turn the outcome into a BackendResult."""
    solver = mb.Solver(engine)
    if not solver.solver_is_supported():
        raise ValueError(f"backend 'cpsat' is not available here: OR-Tools lacks {engine!r}")
    solver.set_time_limit_in_seconds(time_limit_s)
    if params:
        solver.set_solver_specific_parameters(params)
    if watch is not None:
        on_line, holder = watch
        holder[0] = solver
        st = _solve_reading_log(solver, model, on_line, verbose)
    else:
        st = solver.solve(model)
    if backends._INTERRUPT.is_set():
        backends._INTERRUPT.clear()
        raise KeyboardInterrupt("interrupted during the CP-SAT solve")
    S = mb.SolveStatus
    name = st.name
    if st == S.INFEASIBLE and relax:
        return BackendResult("cpsat", "infeasible", message=name)
    if st not in (S.OPTIMAL, S.FEASIBLE):
        # CP-SAT rounds continuous columns to a grid: its INFEASIBLE is no proof for the MILP
        return BackendResult("cpsat", "no-solution", trajectory=traj, message=name)
    values = solver.values(cols).to_numpy()
    for v, x in zip(vs, values):
        v.varValue = float(x)
    obj = float(pulp.value(prob.objective))
    if relax:
        return BackendResult("cpsat", "optimal" if st == S.OPTIMAL else "no-solution", obj,
                             obj, message=name)
    offset = obj - float(solver.objective_value)     # the objective's constant, as MPS kept it
    raw = solver.best_objective_bound
    grid = float(raw) + offset if raw is not None and math.isfinite(raw) else None
    # the bound is the rounded model's, no bound of the MILP: it goes in the message only
    return BackendResult("cpsat", "feasible", obj, None, trajectory=traj,
                         message=f"{name}; bound of CP-SAT's rounded model {grid}")


def run_scip(prob, *, time_limit_s, threads, gap_rel, gap_abs, start, cutoff, relax, verbose,
              progress, options, stop=None) -> BackendResult:
    import pyscipopt as scip
    backends._INTERRUPT.clear()
    traj: list[tuple[float, float | None, float | None]] = []
    deadline = time.perf_counter() + time_limit_s
    EV = scip.SCIP_EVENTTYPE
    kinds = EV.BESTSOLFOUND | EV.DUALBOUNDIMPROVED | EV.NODESOLVED

    class _Watch(scip.Eventhdlr):       # the trajectory, progress lines, stop and interrupt
        def eventinit(self):
            self.model.catchEvent(kinds, self)

        def eventexit(self):
            self.model.dropEvent(kinds, self)

        def eventexec(self, event):
            m = self.model
            s, inc, bnd = m.getSolvingTime(), m.getPrimalbound(), m.getDualbound()
            inc = inc if abs(inc) < 1e19 else None
            bnd = bnd if abs(bnd) < 1e19 else None
            if not traj or traj[-1][1:] != (inc, bnd):
                traj.append((s, inc, bnd))
                if progress is not None and event.getType() == EV.BESTSOLFOUND:
                    progress(f"scip: incumbent {inc}, bound {bnd} at {s:.1f} s")
            if backends._INTERRUPT.is_set() or time.perf_counter() > deadline + 5.0 or (
                    stop is not None and stop(s, inc, bnd)):
                m.interruptSolve()

    class _Scip(pulp.SCIP_PY):
        def buildSolverModel(self, lp):
            super().buildSolverModel(lp)
            m = lp.solverModel
            if relax:
                for v in lp.variables():
                    m.chgVarType(v.solverVar, "C")
            else:
                if cutoff is not None:
                    m.setObjlimit(float(cutoff))
                m.includeEventhdlr(_Watch(), "poet_watch", "trajectory and stop")
            for key, value in options.items():
                m.setParam(key, value)

    solver = _Scip(msg=verbose, timeLimit=time_limit_s, gapRel=None if relax else gap_rel,
                   gapAbs=None if relax else gap_abs, warmStart=start and not relax)
    prob.solve(solver)
    if backends._INTERRUPT.is_set():
        backends._INTERRUPT.clear()
        raise KeyboardInterrupt("interrupted during the SCIP solve")
    m = prob.solverModel
    st = m.getStatus()
    has = m.getNSols() > 0 and prob.sol_status in (pulp.LpSolutionOptimal,
                                                  pulp.LpSolutionIntegerFeasible)
    obj = float(m.getObjVal()) if has else None
    bound = obj if relax and st == "optimal" else m.getDualbound()
    bound = bound if bound is not None and abs(bound) < 1e19 else None
    if st == "infeasible":
        status = "infeasible"
    elif has:
        status = "optimal" if st in ("optimal", "gaplimit") else "feasible"
    else:
        status = "no-solution"
    return BackendResult("scip", status, obj, bound, trajectory=traj, message=st)


# ---------------------------------------------------------------------------------------------
# Recomputation only, as intervals (in the style of Moccasin): CP-SAT's own model
# ---------------------------------------------------------------------------------------------
@dataclass
class IntervalResult:
    """A remat-only schedule from the interval model, simulated; status "optimal" (proven
    within the model's limits on computes and slots), "feasible", "infeasible" (no schedule
    within those limits) or "no-solution" (stopped first)."""

    status: str
    schedule: Schedule | None
    report: SimReport | None
    bound_j: float | None         # lower bound within the model's limits, None if unknown
    solve_s: float
    slots: int
    max_computes: int


def remat_intervals(problem: Problem, *, max_computes: int = 3, extra_slots: int | None = None,
                    time_limit_s: float = 60.0, threads: int | None = None,
                    start: Schedule | None = None) -> IntervalResult:
    """The least-energy recompute-only schedule with at most `max_computes` computes of each
    node and `T + extra_slots` computes in all (default extra_slots = T), by CP-SAT.

    The model: a timeline of slots, one compute per slot at most. Each node has max_computes
    optional compute events (the first present): event c of node v computes at slot t[v,c] and
    keeps its output in RAM over the retention interval [t[v,c], e[v,c]), so it is freed after
    the compute at slot e[v,c] - 1; a node's events come in order and their retentions do not
    overlap (a copy is freed before it is recomputed). RAM: a cumulative constraint over the
    retentions (out_bytes each) and the one-slot workspace of each compute, with capacity the
    budget less the static bytes. Operands: each event of v has, for every predecessor u, an
    event of u whose retention covers v's slot. Objective: the recomputations' energy, in
    integers (joules x 1e9 / the largest compute energy, rounded). The schedule (a compute per
    used slot, then the frees of the retentions that end there) is checked by the simulator.
    start: a remat-only schedule of the problem given to CP-SAT as a hint (when it fits the
    model's limits). Refuses runtime budgets (ValueError); flash plays no part.
    """
    from ortools.sat.python import cp_model

    if isinstance(max_computes, bool) or not isinstance(max_computes, int) or max_computes < 1:
        raise ValueError(f"max_computes must be a whole number >= 1, got {max_computes!r}")
    T = problem.T
    extra = T if extra_slots is None else extra_slots
    if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
        raise ValueError(f"extra_slots must be a whole number >= 0 or None, got {extra_slots!r}")
    if problem.runtime_budget_s is not None:
        raise ValueError("runtime_budget_s must be None for remat_intervals (it prices energy "
                         "only)")
    time_limit_s, threads, _ = check_solve_options(time_limit_s, threads, 0.0)
    H = T + extra
    C = max_computes
    nodes = problem.nodes
    m = cp_model.CpModel()
    t, e, pres = {}, {}, {}
    comp_iv, ret_iv, ret_dem, ws_iv, ws_dem = [], [], [], [], []
    for v in range(T):
        for c in range(C):
            pres[v, c] = m.NewConstant(1) if c == 0 else m.NewBoolVar(f"p{v}_{c}")
            t[v, c] = m.NewIntVar(0, H - 1, f"t{v}_{c}")
            e[v, c] = m.NewIntVar(1, H, f"e{v}_{c}")
            size = m.NewIntVar(1, H, f"l{v}_{c}")
            comp_iv.append(m.NewOptionalFixedSizeIntervalVar(t[v, c], 1, pres[v, c], f"c{v}_{c}"))
            ret_iv.append(m.NewOptionalIntervalVar(t[v, c], size, e[v, c], pres[v, c],
                                                   f"r{v}_{c}"))
            ret_dem.append(nodes[v].out_bytes)
            if nodes[v].workspace_bytes:
                ws_iv.append(comp_iv[-1])
                ws_dem.append(nodes[v].workspace_bytes)
            if c > 0:
                m.AddImplication(pres[v, c], pres[v, c - 1])
                m.Add(t[v, c] >= e[v, c - 1]).OnlyEnforceIf(pres[v, c])
                m.Add(t[v, c] == t[v, c - 1]).OnlyEnforceIf(pres[v, c].Not())  # absent: pinned
                m.Add(e[v, c] == e[v, c - 1]).OnlyEnforceIf(pres[v, c].Not())
    m.AddNoOverlap(comp_iv)
    if problem.ram_budget_bytes is not None:
        m.AddCumulative(ret_iv + ws_iv, ret_dem + ws_dem,
                        max(problem.ram_budget_bytes - problem.static_bytes, 0))
    for v in range(T):
        for u in problem.preds[v]:
            for j in range(C):
                covers = []
                for i in range(C):
                    b = m.NewBoolVar(f"k{u}_{i}_{v}_{j}")
                    m.AddImplication(b, pres[u, i])
                    m.Add(t[u, i] + 1 <= t[v, j]).OnlyEnforceIf(b)
                    m.Add(e[u, i] >= t[v, j] + 1).OnlyEnforceIf(b)
                    covers.append(b)
                m.AddBoolOr(covers + [pres[v, j].Not()])
    top = max((n.compute_j for n in nodes), default=0.0) or 1.0
    scale = 1e9 / top
    m.Minimize(sum(int(round(nodes[v].compute_j * scale)) * pres[v, c]
                   for v in range(T) for c in range(1, C)))
    if start is not None:
        _hint_intervals(m, problem, start, t, e, pres, C, H)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    if threads is not None:
        solver.parameters.num_workers = threads
    t0 = time.perf_counter()
    st = solver.Solve(m)
    solve_s = time.perf_counter() - t0
    e0 = problem.store_all_energy_j
    if st == cp_model.INFEASIBLE:
        return IntervalResult("infeasible", None, None, None, solve_s, H, C)
    if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return IntervalResult("no-solution", None, None, None, solve_s, H, C)
    sched = _interval_schedule(problem, solver, t, e, pres, C)
    rep = simulate(problem, sched)
    sched.predicted = rep.predicted()
    # the bound, in joules: store-all plus the objective bound unscaled, less the rounding slack
    slack = 0.5 * T * (C - 1) / scale
    bound = e0 + max(solver.BestObjectiveBound() / scale - slack, 0.0)
    return IntervalResult("optimal" if st == cp_model.OPTIMAL else "feasible", sched, rep,
                          min(bound, rep.energy_j), solve_s, H, C)


def _interval_schedule(problem, solver, t, e, pres, C) -> Schedule:
    """The instruction list of a solution: slot by slot, the compute there, then the frees of
    the retentions that end after it."""
    events = [(solver.Value(t[v, c]), solver.Value(e[v, c]), v)
              for v in range(problem.T) for c in range(C) if solver.Value(pres[v, c])]
    at = {s: v for s, _, v in events}
    if len(at) != len(events):
        raise RuntimeError("remat_intervals: two computes share a slot (a bug of the model)")
    ends: dict[int, list[int]] = {}
    for s, end, v in events:
        ends.setdefault(end, []).append(v)
    ins: list[tuple[str, int]] = []
    for slot in range(max(end for _, end, _ in events) if events else 0):
        if slot in at:
            ins.append(("compute", at[slot]))
        ins += [("free", v) for v in sorted(ends.get(slot + 1, []))]
    return Schedule(ins, problem_fingerprint=problem.fingerprint, strategy="remat",
                    ram_budget_bytes=problem.ram_budget_bytes,
                    extra={"solver": {"backend": "cpsat-intervals"}})


def _hint_intervals(m, problem, start: Schedule, t, e, pres, C, H) -> None:
    """Hint the model with a remat-only schedule: its computes in order take slots 0, 1, ...;
    each copy is retained until the compute after which it is freed. Skipped (no hint) when the
    schedule pages, or needs more computes or slots than the model has."""
    if any(op in ("page_in", "page_out") for op, _ in start.instructions):
        return
    slot, live, events = -1, {}, {v: [] for v in range(problem.T)}
    for op, v in start.instructions:
        if op == "compute":
            slot += 1
            live[v] = len(events[v])
            events[v].append([slot, None])
        elif op == "free" and v in live:
            events[v][live.pop(v)][1] = max(slot + 1, events[v][-1][0] + 1)
    if slot + 1 > H or any(len(evs) > C for evs in events.values()):
        return
    for v, evs in events.items():
        for c in range(C):
            s, end = evs[min(c, len(evs) - 1)]
            end = H if end is None else end
            m.AddHint(t[v, c], s)
            m.AddHint(e[v, c], end)
            if c > 0:
                m.AddHint(pres[v, c], c < len(evs))
