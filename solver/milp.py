"""The energy-optimal schedule as a staged mixed-integer linear program (built with PuLP).

The schedule space ("staged plans")
-----------------------------------
Stage t (t = 0..T-1) ends with the first compute of node t, so first computes come in id order.
Inside stage t the *positions* k = 0..t are visited in increasing order; at position k < t node k
may be materialised once, by a recompute (needs its operands in RAM) or by a page-in (needs it on
flash); at position t node t is computed for the first time and may then be paged out (the only
page-out of a node: its copy on flash serves every later page-in). A tensor is freed right after
the last compute in the stage that reads it unless it is kept for a later stage, and a flash copy
is dropped right after its last page-in. `plan_to_schedule` turns a plan into instructions with
exactly this minimal residency, so a plan's energy is the sum of its computes and page transfers.

Which materialisations exist (the restrictions; the defaults, measured against the unrestricted
search of `solver.bruteforce` on 200 random DAGs, lose optimality on 5 of them, all through the
first two items of the last point):
- H(i), the horizon of i: the last stage in which i can be read, H(i) = max over consumers c of
  (H(c) if c may be recomputed else c); H(i) = i for a node nobody reads. Recomputes, page-ins
  and retention of i exist only in stages i < t <= H(i).
- A backward node is recomputed only if a consumer lies beyond the next node (max succ > i + 1)
  (`backward_remat="far"`; "all" or "none" are options).
- A forward stage t recomputes or pages in only the inputs of t that skip over t-1 (residuals,
  long skips; `forward_stages="skips"`; "all" or "none" are options). Loss and backward stages
  may materialise any node whose horizon they lie in.
- A recompute or page-in must be read by a later compute of its own stage
  (`read_in_stage="all"`): a copy made only to be kept for a later stage is ruled out ("page_in"
  applies the rule to page-ins only, where it loses nothing; "none" drops it). This rule tightens
  the LP relaxation a lot: on ResNet-18 it took the 1e-4 gap from over 600 s to 33 s.
- One materialisation of a node per stage, at its own position; one page-out per node, right
  after its first compute. Hence the staged space misses schedules whose first computes leave
  id order (a diamond's branches in the other order can peak lower) or that hold two copies'
  lifetimes of a node inside one stage.

The MILP (B = RAM budget - static bytes, memory in units g = gcd of all sizes; energies divided by
E0 = the store-all energy, so the objective is the overhead above store-all)
-------------------------------------------------------------------------------------------
binary    R[t,i]  recompute i at position i of stage t        (i < t <= H(i), remat)
binary    P[t,i]  page i in at position i of stage t          (i < t <= H(i), paging)
binary    O[i]    page i out right after its first compute     (paging, i read by someone)
cont.     S[t,i]  i kept in RAM from stage t-1 into stage t    (i < t <= H(i))
cont.     F[t,i,k] i freed right after position k < t of stage t, k a consumer of i that may be
                  computed in stage t
cont.     U[t,k]  RAM held just before position k of stage t (rows only where something can
                  be materialised)
cont.     L[t,i]  i still on flash during stage t (only when a flash budget binds)
with m(t,i) = S[t,i] + R[t,i] + P[t,i] (m(i,i) = 1: the first compute; R[t,t] = 1 is a constant):

min   sum c_i R[t,i] + sum p^in_i P[t,i] + sum p^out_i O[i]                      (all / E0)
s.t.  m(t,i) <= 1                                           at most one copy per stage
      S[t+1,i] + sum_{k<t} F[t,i,k] <= m(t,i)               keep / free only what is resident
      R[t,j] <= m(t,i) - sum_{k<j} F[t,i,k]   (i in preds j) operands resident at j's compute
      P[t,i] <= O[i]                        (or P[t,i] <= L[t,i] <= L[t-1,i], L[i+1,i] <= O[i])
      U[t,k1] = sum_i b_i S[t,i]                             k1 the first row position of stage t
      U[t,k'] = U[t,k] + b_k (R[t,k] + P[t,k]) - sum_i b_i F[t,i,k]   k' the row after k
      U[t,k] + (b_k + w_k) R[t,k] + b_k P[t,k] <= B          RAM at each compute / page-in
      sum s_i R + s^in_i P + s^out_i O <= runtime budget - store-all time   (if set)
      sum_i b_i L[t,i] + b_t O[t] <= flash budget            (rows at page-outs, if it binds)
Only R, P and O are integer: for integer R, P, O the continuous rows force S, F and U at least up
to the minimal residency (a consumer needs m - sum F = 1, so nothing it reads is freed early), so
the decoded minimal-residency schedule never holds more RAM than a row allowed. F[t,i,t] (a free
at the end of the stage) is implied by the inequality in the S row and needs no column.

      R[t,i] + P[t,i] <= sum_{j in succ(i) computable in t, j < t} R[t,j]   (read in stage)
The MILP's feasible plans are exactly the staged plans whose minimal residency fits: with
read_in_stage="all" every copy is read, so the MILP can always free it right after its last
reader (with "page_in"/"none" a copy nobody reads may have to be held until a reader's
position, which only adds energy and RAM and so never matters for an optimum).
`solver.bruteforce_staged` searches the same space independently.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import reduce

import pulp

from .errors import ProblemError
from .problem import Problem
from .schedule import Schedule

BACKWARD_REMAT = ("far", "all", "none")
FORWARD_STAGES = ("all", "skips", "none")
READ_IN_STAGE = ("page_in", "all", "none")
MATERIALISE = ("compute", "page_in")


class PlanError(ValueError):
    """A staged plan breaks a rule of the staged space (the message names stage, node and rule)."""


# ---------------------------------------------------------------------------------------------
# The staged space: index sets shared by the MILP and the staged brute force
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StagedSpace:
    """Which materialisations the staged space allows for a problem (see the module docstring)."""

    problem: Problem
    remat: bool
    paging: bool
    backward_remat: str
    horizon: tuple[int, ...]       # H(i): last stage in which i can be read
    recompute: tuple[bool, ...]    # i may be recomputed (in some stage i < t <= H(i))
    pageable: tuple[bool, ...]     # O[i] exists (and i may be paged in, in some stage)
    flash_binds: bool              # a flash budget below the bytes of every pageable node
    forward_stages: str            # what forward stages may materialise: FORWARD_STAGES
    read_in_stage: str             # which materialisations must be read in their stage: JIT

    def stages(self, i: int) -> range:
        """Stages after i's first compute in which i may be resident: i < t <= H(i)."""
        return range(i + 1, self.horizon[i] + 1)

    @property
    def T(self) -> int:
        return self.problem.T

    def can_recompute(self, t: int, i: int) -> bool:
        """Whether R[t,i] exists (i < t)."""
        return self._options[t].get(i, (False, False))[0]

    def can_page_in(self, t: int, i: int) -> bool:
        """Whether P[t,i] exists (i < t)."""
        return self._options[t].get(i, (False, False))[1]

    def must_be_read(self, t: int, i: int, how: str) -> bool:
        """Whether materialising i in stage t (how: "compute" | "page_in") requires a later
        compute of the same stage to read it (the read_in_stage rule; t itself always reads
        its operands)."""
        if t in self._succ_sets[i] or self.read_in_stage == "none":
            return False
        return how == "page_in" or self.read_in_stage == "all"

    def candidates(self, t: int) -> list[int]:
        """Positions k < t at which something may be materialised in stage t."""
        return self._candidates[t]

    def computable(self, t: int) -> list[int]:
        """Positions k <= t at which a compute may happen in stage t (t itself included)."""
        return self._computable[t]

    def live(self, t: int) -> list[int]:
        """Nodes i < t that may be resident in stage t (t <= H(i))."""
        return self._live[t]

    def readers(self, t: int, i: int) -> list[int]:
        """Consumers of i that may be computed in stage t (t itself included if it reads i)."""
        comp = self._computable_set[t]
        return [k for k in self.problem.succs[i] if k in comp]

    def free_positions(self, t: int, i: int) -> list[int]:
        """K(t,i) minus t: consumers k < t of i that may be computed in stage t, where i may be
        freed right after k's compute."""
        return [k for k in self.readers(t, i) if k < t]

    def _may_materialise(self, t: int, i: int) -> bool:
        if self.problem.nodes[t].kind != "forward" or self.forward_stages == "all":
            return True
        if self.forward_stages == "none":
            return False
        return i < t - 1 and i in self._pred_sets[t]      # "skips": a skip input of t

    def __post_init__(self):
        T = self.problem.T
        succs = self.problem.succs
        object.__setattr__(self, "_pred_sets", [frozenset(p) for p in self.problem.preds])
        object.__setattr__(self, "_succ_sets", [frozenset(s) for s in succs])
        options, cands, comps, lives, comp_sets = [], [], [], [], []
        for t in range(T):
            live = [i for i in range(t) if self.horizon[i] >= t]
            opts = {k: (self.recompute[k], self.pageable[k]) for k in live
                    if self._may_materialise(t, k) and (self.recompute[k] or self.pageable[k])}
            # a materialisation that must be read in its stage needs a reader that may run
            # there; dropping a recompute can leave another without one, hence the loop
            changed = True
            while changed:
                changed = False
                comp = {k for k, (r, _) in opts.items() if r} | {t}
                for k, (r, p) in list(opts.items()):
                    has_reader = any(j in comp for j in succs[k])
                    r2 = r and (has_reader or not self.must_be_read(t, k, "compute"))
                    p2 = p and (has_reader or not self.must_be_read(t, k, "page_in"))
                    if (r2, p2) != (r, p):
                        changed = True
                        if r2 or p2:
                            opts[k] = (r2, p2)
                        else:
                            del opts[k]
            options.append(opts)
            lives.append(live)
            cands.append(sorted(opts))
            comp = sorted(k for k, (r, _) in opts.items() if r) + [t]
            comps.append(comp)
            comp_sets.append(frozenset(comp))
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_candidates", cands)
        object.__setattr__(self, "_computable", comps)
        object.__setattr__(self, "_live", lives)
        object.__setattr__(self, "_computable_set", comp_sets)


def staged_space(problem: Problem, *, remat: bool = True, paging: bool = True,
                 backward_remat: str = "far", forward_stages: str = "skips",
                 read_in_stage: str = "all") -> StagedSpace:
    """The staged space of `problem` with recomputation and/or paging switched on.

    forward_stages: what a forward stage t may recompute or page in: "all" (any live node),
    "skips" (only inputs of t that skip over t-1, as a residual or long skip connection needs),
    "none". Loss and backward stages may always materialise any live node.
    read_in_stage: "all" (a recompute or page-in must be read by a later compute of its own
    stage), "page_in" (page-ins only: paging in earlier only holds RAM longer, so this loses
    nothing) or "none".
    """
    if forward_stages not in FORWARD_STAGES:
        raise ValueError(f"forward_stages must be one of {', '.join(FORWARD_STAGES)}, "
                         f"got {forward_stages!r}")
    if backward_remat not in BACKWARD_REMAT:
        raise ValueError(f"backward_remat must be one of {', '.join(BACKWARD_REMAT)}, "
                         f"got {backward_remat!r}")
    if read_in_stage not in READ_IN_STAGE:
        raise ValueError(f"read_in_stage must be one of {', '.join(READ_IN_STAGE)}, "
                         f"got {read_in_stage!r}")
    T, succs = problem.T, problem.succs
    recompute = []
    for n in problem.nodes:
        ok = remat and bool(succs[n.id])
        if ok and n.kind == "backward":
            ok = backward_remat == "all" or (backward_remat == "far" and succs[n.id][-1] > n.id + 1)
        recompute.append(ok)
    horizon = [0] * T
    for i in reversed(range(T)):
        horizon[i] = max((horizon[c] if recompute[c] else c for c in succs[i]), default=i)
    pageable = [paging and bool(succs[i]) for i in range(T)]
    fb = problem.flash_budget_bytes
    flash_binds = (fb is not None and paging
                   and sum(n.out_bytes for n in problem.nodes if pageable[n.id]) > fb)
    return StagedSpace(problem, remat, paging, backward_remat, tuple(horizon), tuple(recompute),
                       tuple(pageable), flash_binds, forward_stages, read_in_stage)


# ---------------------------------------------------------------------------------------------
# Plans (points of the staged space) and their minimal-residency schedules
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StagedPlan:
    """A point of the staged space.

    stages[t]: the materialisations of stage t as (node, "compute" | "page_in") in position
    order, the last one being (t, "compute"); paged_out: the nodes paged out after their first
    compute.
    """

    stages: tuple[tuple[tuple[int, str], ...], ...]
    paged_out: frozenset[int] = field(default_factory=frozenset)

    def counts(self) -> dict[str, int]:
        rec = sum(1 for st in self.stages for k, how in st[:-1] if how == "compute")
        pin = sum(1 for st in self.stages for k, how in st if how == "page_in")
        return {"recomputes": rec, "page_ins": pin, "page_outs": len(self.paged_out)}


def store_all_plan(problem: Problem) -> StagedPlan:
    """The plan that computes every node once and never pages."""
    return StagedPlan(tuple(((t, "compute"),) for t in range(problem.T)), frozenset())


def plan_energy(problem: Problem, plan: StagedPlan) -> float:
    """Joules of the plan: every compute, page-in and page-out it performs."""
    nodes = problem.nodes
    e = 0.0
    for st in plan.stages:
        for k, how in st:
            e += nodes[k].compute_j if how == "compute" else nodes[k].pagein_j
    return e + sum(nodes[i].pageout_j for i in plan.paged_out)


@dataclass
class _Copy:
    node: int
    stage: int            # stage of the materialisation (its position is the node id)
    last_use: tuple[int, int] | None = None   # (stage, position) of the last compute reading it


def _copies(problem: Problem, plan: StagedPlan) -> list[_Copy]:
    """Check the plan's structure and operand availability; return every copy in order, each
    with its last use filled in."""
    T = problem.T
    if len(plan.stages) != T:
        raise PlanError(f"a plan needs {T} stages (one per node), got {len(plan.stages)}")
    current: dict[int, _Copy] = {}
    order: list[_Copy] = []
    for t, st in enumerate(plan.stages):
        if not st or st[-1] != (t, "compute"):
            raise PlanError(f"stage {t} must end with the first compute of node {t}")
        prev = -1
        for k, how in st:
            if how not in MATERIALISE:
                raise PlanError(f"stage {t}: {how!r} is not one of {', '.join(MATERIALISE)}")
            if not (isinstance(k, int) and prev < k <= t):
                raise PlanError(f"stage {t}: positions must increase and stay <= {t}, got {k} "
                                f"after {prev}")
            prev = k
            if how == "compute":
                for p in problem.preds[k]:
                    c = current.get(p)
                    if c is None:
                        raise PlanError(f"stage {t}: node {k} is computed but its operand {p} "
                                        f"is not in RAM")
                    c.last_use = (t, k)
            else:
                if k not in plan.paged_out or k >= t:
                    raise PlanError(f"stage {t}: page_in of node {k}, which is not on flash "
                                    f"(it is paged out only right after its first compute)")
            c = _Copy(k, t)
            current[k] = c
            order.append(c)
    for i in plan.paged_out:
        if not 0 <= i < T:
            raise PlanError(f"paged_out names node {i}, which does not exist")
    return order


def plan_to_instructions(problem: Problem, plan: StagedPlan) -> list[tuple[str, int]]:
    """The instruction list of a plan with minimal residency: each copy is freed right after the
    last compute that reads it (a copy nobody reads right after it is made), each flash copy is
    dropped right after its last page-in (right after its page-out if never paged in).
    Raises PlanError if the plan reads a tensor that is not resident."""
    order = _copies(problem, plan)
    frees_at: dict[tuple[int, int], list[int]] = {}
    for c in order:
        at = c.last_use if c.last_use is not None else (c.stage, c.node)
        frees_at.setdefault(at, []).append(c.node)
    last_in: dict[int, tuple[int, int]] = {}
    for t, st in enumerate(plan.stages):
        for k, how in st:
            if how == "page_in":
                last_in[k] = (t, k)
    out: list[tuple[str, int]] = []
    for t, st in enumerate(plan.stages):
        for k, how in st:
            out.append((how, k))
            if how == "page_in" and last_in[k] == (t, k):
                out.append(("drop_flash", k))
            if k == t and t in plan.paged_out:
                out.append(("page_out", t))
                if t not in last_in:
                    out.append(("drop_flash", t))
            out.extend(("free", i) for i in sorted(frees_at.get((t, k), ())))
    return out


def plan_to_schedule(problem: Problem, plan: StagedPlan, *, strategy: str = "poet") -> Schedule:
    """A Schedule for the plan (see `plan_to_instructions`), tied to the problem's fingerprint."""
    return Schedule(plan_to_instructions(problem, plan), problem_fingerprint=problem.fingerprint,
                    strategy=strategy, ram_budget_bytes=problem.ram_budget_bytes,
                    extra={"plan": plan.counts()})


def schedule_to_plan(problem: Problem, schedule: Schedule) -> StagedPlan | None:
    """Project a schedule into the staged space, or None when it does not fit its layout.

    Stages are cut at first computes (which must come in id order); every materialisation of a
    stage is moved to its own position; every page-out becomes the page-out after the first
    compute; copies nobody reads and page-outs never paged in are dropped (they only cost).
    The result is checked for operand availability but not against the budgets or the
    space's index sets (`MilpModel.encode` and `MilpModel.violations` do that)."""
    T = problem.T
    stages: list[dict[int, str]] = [{} for _ in range(T)]
    paged: set[int] = set()
    first = 0
    for op, i in schedule.instructions:
        if not 0 <= i < T:
            return None
        if op == "page_out":
            paged.add(i)
        elif op in MATERIALISE:
            if op == "compute" and i == first:
                stages[first][i] = "compute"
                first += 1
                continue
            if first >= T:
                continue            # after the last first compute: nothing is read any more
            if op == "compute" and i > first:
                return None         # a first compute out of id order
            if i in stages[first]:
                return None         # two copies of a node in one stage
            stages[first][i] = op
    if first != T:
        return None
    plan = StagedPlan(tuple(tuple(sorted(st.items())) for st in stages), frozenset(paged))
    try:
        return drop_useless(problem, plan)
    except PlanError:
        return None


def drop_useless(problem: Problem, plan: StagedPlan) -> StagedPlan:
    """The plan without copies nobody reads (recomputes and page-ins; first computes stay) and
    without page-outs never paged in: same validity, no more RAM, energy or time."""
    while True:
        order = _copies(problem, plan)
        useless = {(c.stage, c.node) for c in order
                   if c.last_use is None and c.node != c.stage}
        read_in = {k for st in plan.stages for k, how in st if how == "page_in"}
        paged = frozenset(i for i in plan.paged_out if i in read_in)
        if not useless and paged == plan.paged_out:
            return plan
        plan = StagedPlan(tuple(tuple(m for m in st if (t, m[0]) not in useless)
                                for t, st in enumerate(plan.stages)), paged)


# ---------------------------------------------------------------------------------------------
# Scaling (memory in gcd units, energy and time relative to store-all)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scaling:
    """Units of the MILP: bytes / unit_bytes, joules / energy_j, seconds / time_s."""

    unit_bytes: int
    energy_j: float
    time_s: float
    store_all_energy_j: float
    store_all_time_s: float

    @classmethod
    def of(cls, problem: Problem, objective_scale: float = 1.0) -> Scaling:
        """objective_scale: objective units per store-all energy (1: the objective is the
        relative overhead above store-all)."""
        sizes = [n.out_bytes for n in problem.nodes] + [n.workspace_bytes for n in problem.nodes]
        g = reduce(math.gcd, (s for s in sizes if s > 0), 0) or 1
        e0 = sum(n.compute_j for n in problem.nodes)
        s0 = sum(n.compute_s for n in problem.nodes)
        return cls(g, (e0 if e0 > 0 else 1.0) / objective_scale, s0 if s0 > 0 else 1.0, e0, s0)

    @property
    def objective_per_store_all(self) -> float:
        """Objective units in one store-all energy (to turn a relative gap into an absolute one)."""
        return (self.store_all_energy_j if self.store_all_energy_j > 0 else 1.0) / self.energy_j

    def units(self, nbytes: int) -> int:
        return nbytes // self.unit_bytes


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
@dataclass
class MilpModel:
    """A built PuLP model and the handles to read a plan back out of it."""

    problem: Problem
    space: StagedSpace
    scaling: Scaling
    prob: pulp.LpProblem
    R: dict[tuple[int, int], pulp.LpVariable]
    P: dict[tuple[int, int], pulp.LpVariable]
    O: dict[int, pulp.LpVariable]
    S: dict[tuple[int, int], pulp.LpVariable]
    F: dict[tuple[int, int, int], pulp.LpVariable]
    U: dict[tuple[int, int], pulp.LpVariable]
    L: dict[tuple[int, int], pulp.LpVariable]
    mem_b: list[float] = field(default_factory=list)   # out_bytes in the memory rows' units
    relaxed: bool = False

    @property
    def n_variables(self) -> int:
        return len(self.prob.variables())

    @property
    def n_constraints(self) -> int:
        return len(self.prob.constraints())

    @property
    def n_integer(self) -> int:
        return 0 if self.relaxed else len(self.R) + len(self.P) + len(self.O)

    # -- values ------------------------------------------------------------------------------
    def overhead_value(self) -> float:
        """Objective at the current variable values: the energy above store-all, in objective
        units (`scaling.energy_j` joules each)."""
        v = pulp.value(self.prob.objective)
        return float(v) if v is not None else 0.0

    def energy_value_j(self) -> float:
        """Joules at the current variable values (store-all energy + objective x scale)."""
        return self.scaling.store_all_energy_j + self.overhead_value() * self.scaling.energy_j

    def to_energy_j(self, overhead: float) -> float:
        return self.scaling.store_all_energy_j + overhead * self.scaling.energy_j

    def plan(self) -> StagedPlan:
        """The plan of the current (integer) variable values, rounded at 0.5."""
        def on(v):
            return v.varValue is not None and v.varValue > 0.5
        stages = []
        for t in range(self.problem.T):
            st = []
            for k in self.space.candidates(t):
                r, p = self.R.get((t, k)), self.P.get((t, k))
                if r is not None and on(r):
                    st.append((k, "compute"))
                elif p is not None and on(p):
                    st.append((k, "page_in"))
            st.append((t, "compute"))
            stages.append(tuple(st))
        return StagedPlan(tuple(stages), frozenset(i for i, v in self.O.items() if on(v)))

    def encode(self, plan: StagedPlan) -> dict[str, float] | None:
        """Values of every variable for `plan` with minimal residency (useless copies dropped),
        or None if the plan uses a materialisation this model has no column for."""
        plan = drop_useless(self.problem, plan)
        order = _copies(self.problem, plan)
        val: dict[str, float] = {v.name: 0.0 for v in self.prob.variables()}
        for t, st in enumerate(plan.stages):
            for k, how in st[:-1]:
                var = (self.R if how == "compute" else self.P).get((t, k))
                if var is None:
                    return None
                val[var.name] = 1.0
        for i in plan.paged_out:
            if i not in self.O:
                return None
            val[self.O[i].name] = 1.0
        b = self.mem_b
        for c in order:
            end = c.last_use if c.last_use is not None else (c.stage, c.node)
            for t in range(c.stage + 1, end[0] + 1):
                var = self.S.get((t, c.node))
                if var is None:
                    return None
                val[var.name] = 1.0
            if end[1] < end[0]:                      # freed before the end of its stage
                var = self.F.get((end[0], c.node, end[1]))
                if var is None:
                    return None
                val[var.name] = 1.0
        for (t, i), var in self.L.items():
            val[var.name] = 1.0 if any(how == "page_in" and k == i
                                       for s in plan.stages[t:] for k, how in s) else 0.0
        for t in range(self.problem.T):            # U by the same recursion as the rows
            rows = self.space.candidates(t) + [t]
            u = sum(b[i] * val[self.S[(t, i)].name] for i in self.space.live(t))
            for k in rows:
                if (t, k) in self.U:
                    val[self.U[(t, k)].name] = float(u)
                m = 1.0 if k == t else (val[self.R[(t, k)].name] if (t, k) in self.R else 0.0) \
                    + (val[self.P[(t, k)].name] if (t, k) in self.P else 0.0)
                u += b[k] * m - sum(b[i] * val[f.name] for (tt, i, kk), f in self._f_at(t, k))
        return val

    def _f_at(self, t: int, k: int):
        idx = getattr(self, "_f_index", None)
        if idx is None:
            idx = {}
            for key, f in self.F.items():
                idx.setdefault((key[0], key[2]), []).append((key, f))
            self._f_index = idx
        return idx.get((t, k), ())

    def set_start(self, plan: StagedPlan) -> bool:
        """Set every variable's initial value to `plan` (for a warm start); False if the plan
        has no image in this model."""
        val = self.encode(plan)
        if val is None:
            return False
        self.set_values(val)
        return True

    def set_values(self, values: dict[str, float]) -> None:
        """Set every variable's initial value from `values` (name -> value, as `encode` gives)."""
        for v in self.prob.variables():
            v.setInitialValue(values[v.name], check=False)

    def violations(self, values: dict[str, float], tol: float = 1e-6) -> list[str]:
        """Names of the rows `values` breaks (a check used by tests and by warm starts)."""
        bad = []
        for c in self.prob.constraints():
            lhs = sum(coef * values[v.name] for v, coef in c.items()) + c.constant
            if (c.sense == pulp.LpConstraintLE and lhs > tol) or \
               (c.sense == pulp.LpConstraintGE and lhs < -tol) or \
               (c.sense == pulp.LpConstraintEQ and abs(lhs) > tol):
                bad.append(c.name)
        return bad


def _objective_scale(problem: Problem) -> float:
    """Objective units per store-all energy: a power of ten that puts the largest cost near 100
    (HiGHS' absolute tolerances then sit far below every cost that matters)."""
    e0 = sum(n.compute_j for n in problem.nodes)
    top = max((max(n.compute_j, n.pagein_j, n.pageout_j) for n in problem.nodes), default=0.0)
    if e0 <= 0 or top <= 0:
        return 1.0
    return 10.0 ** round(math.log10(100.0 * e0 / top))


def build_milp(problem: Problem, *, remat: bool = True, paging: bool = True,
               backward_remat: str = "far", forward_stages: str = "skips",
               read_in_stage: str = "all", relax: bool = False,
               cutoff_overhead: float | None = None, mem_scale: bool = True,
               objective_scale: float | None = None) -> MilpModel:
    """Build the staged MILP of `problem` (see the module docstring for the math).

    remat / paging switch recomputation and paging (both off: only store-all-like plans).
    relax=True makes R, P, O continuous (the LP relaxation). cutoff_overhead, if given, adds
    objective <= cutoff (a relative overhead above store-all). Needs a RAM budget; raises
    ProblemError when the budget is below the static bytes.
    """
    if problem.ram_budget_bytes is None:
        raise ProblemError("ram_budget_bytes is not set: the MILP needs a RAM budget "
                           "(without one store-all is optimal)")
    free_bytes = problem.ram_budget_bytes - problem.static_bytes
    if free_bytes < 0:
        raise ProblemError(f"ram_budget_bytes ({problem.ram_budget_bytes}) is below static_bytes "
                           f"({problem.static_bytes}): nothing can be scheduled")
    space = staged_space(problem, remat=remat, paging=paging, backward_remat=backward_remat,
                         forward_stages=forward_stages, read_in_stage=read_in_stage)
    if objective_scale is None:
        objective_scale = _objective_scale(problem)
    sc = Scaling.of(problem, objective_scale)
    T, nodes, preds = problem.T, problem.nodes, problem.preds
    # memory rows: whole gcd units, times a power of two that brings the budget near 2^10 (exact
    # in floating point). Binaries a hair off 0/1 (solvers return them within ~1e-9) and the row
    # tolerance (1e-7 scaled) may overstate what fits by less than `slack` units; RAM in use is
    # a whole number of units, so floor(slack) off the budget keeps rounded solutions within it
    # (floor(slack) is 0 below a billion units; solve() checks every schedule anyway).
    shift = 2.0 ** -max(0, sc.units(free_bytes).bit_length() - 11) if mem_scale else 1.0
    b = [sc.units(n.out_bytes) * shift for n in nodes]
    w = [sc.units(n.workspace_bytes) * shift for n in nodes]
    slack = 1e-9 * sum(sc.units(n.out_bytes) for n in nodes) + 1e-7 / shift
    budget = (sc.units(free_bytes) - math.floor(slack)) * shift
    cat = pulp.LpContinuous if relax else pulp.LpBinary
    prob = pulp.LpProblem(re.sub(r"[^A-Za-z0-9_]", "_", problem.name or "poet")[:60] or "poet",
                          pulp.LpMinimize)
    R: dict = {}
    P: dict = {}
    O: dict = {}
    S: dict = {}
    F: dict = {}
    U: dict = {}
    L: dict = {}

    def var(name, cat=pulp.LpContinuous, lb=0.0, ub=1.0):
        return prob.add_variable(name, lowBound=lb, upBound=ub, cat=cat)

    def row(terms, sense, rhs, name):
        expr = pulp.LpAffineExpression([(v, c) for v, c in terms if c != 0])
        prob.addConstraint(pulp.LpConstraint(expr, sense=sense, rhs=rhs, name=name))

    # -- columns: only where they can be non-zero -----------------------------------------
    for i in range(T):
        if space.pageable[i]:
            O[i] = var(f"O_{i}", cat)
        for t in space.stages(i):
            S[(t, i)] = var(f"S_{t}_{i}")
            if space.can_recompute(t, i):
                R[(t, i)] = var(f"R_{t}_{i}", cat)
            if space.can_page_in(t, i):
                P[(t, i)] = var(f"P_{t}_{i}", cat)
            if space.pageable[i] and space.flash_binds:
                L[(t, i)] = var(f"L_{t}_{i}")
    free_pos: dict[tuple[int, int], list[int]] = {}
    for t in range(T):
        for i in space.live(t):
            ks = space.free_positions(t, i)
            free_pos[(t, i)] = ks
            for k in ks:
                F[(t, i, k)] = var(f"F_{t}_{i}_{k}")

    def m_terms(t, i):
        """m(t,i) as (var, coef) terms; None for the first compute (the constant 1)."""
        if t == i:
            return None
        return [(x[(t, i)], 1.0) for x in (S, R, P) if (t, i) in x]

    # -- objective: overhead above store-all, relative ---------------------------------------
    obj = [(v, nodes[i].compute_j / sc.energy_j) for (t, i), v in R.items()]
    obj += [(v, nodes[i].pagein_j / sc.energy_j) for (t, i), v in P.items()]
    obj += [(v, nodes[i].pageout_j / sc.energy_j) for i, v in O.items()]
    prob.setObjective(pulp.LpAffineExpression([(v, c) for v, c in obj if c != 0]))
    if cutoff_overhead is not None:
        row(obj, pulp.LpConstraintLE, cutoff_overhead, "cutoff")

    LE, EQ = pulp.LpConstraintLE, pulp.LpConstraintEQ
    for t in range(T):
        # one copy per stage; keep only what is resident
        for i in space.live(t):
            m = m_terms(t, i)
            if len(m) > 1:
                row(m, LE, 1, f"once_{t}_{i}")
            frees = [(F[(t, i, k)], 1.0) for k in free_pos[(t, i)]]
            kept = [(S[(t + 1, i)], 1.0)] if (t + 1, i) in S else []
            if kept or frees:
                row(kept + [(v, -c) for v, c in m] + frees, LE, 0, f"keep_{t}_{i}")
        # operands resident at every compute
        for j in space.computable(t):
            for i in preds[j]:
                m = m_terms(t, i)
                frees = [(F[(t, i, k)], 1.0) for k in free_pos[(t, i)] if k < j]
                if j == t:
                    row([(v, -c) for v, c in m] + frees, LE, -1, f"need_{t}_{j}_{i}")
                else:
                    row([(R[(t, j)], 1.0)] + [(v, -c) for v, c in m] + frees, LE, 0,
                        f"need_{t}_{j}_{i}")
        # a materialisation that must be read in its stage: some later compute reads it
        for k in space.candidates(t):
            mats = [(x[(t, k)], 1.0) for x, how in ((R, "compute"), (P, "page_in"))
                    if (t, k) in x and space.must_be_read(t, k, how)]
            if mats:
                readers = [(R[(t, j)], -1.0) for j in space.readers(t, k) if j != t]
                row(mats + readers, LE, 0, f"read_{t}_{k}")
        # RAM, just before and at each materialisation
        positions = space.candidates(t) + [t]
        f_at: dict[int, list] = {}
        for i in space.live(t) + [t]:
            for k in free_pos.get((t, i), ()):
                f_at.setdefault(k, []).append((F[(t, i, k)], b[i]))
        prev = None
        for k in positions:
            u = U[(t, k)] = var(f"U_{t}_{k}", ub=None)
            if prev is None:
                row([(u, 1.0)] + [(S[(t, i)], -b[i]) for i in space.live(t)], EQ, 0,
                    f"ram0_{t}")
            else:
                pk = prev
                grow = [(x[(t, pk)], -b[pk]) for x in (R, P) if (t, pk) in x]
                row([(u, 1.0), (U[(t, pk)], -1.0)] + grow + f_at.get(pk, []), EQ, 0,
                    f"ram_{t}_{k}")
            if k == t:
                row([(u, 1.0)], LE, budget - b[t] - w[t], f"mem_{t}_{k}")
            else:
                terms = [(u, 1.0)]
                if (t, k) in R:
                    terms.append((R[(t, k)], b[k] + w[k]))
                if (t, k) in P:
                    terms.append((P[(t, k)], b[k]))
                row(terms, LE, budget, f"mem_{t}_{k}")
            prev = k
    # flash: a page-in needs the copy written after the first compute (and still kept)
    for (t, i), p in P.items():
        row([(p, 1.0), (L[(t, i)] if space.flash_binds else O[i], -1.0)], LE, 0,
            f"onflash_{t}_{i}")
    for (t, i), fl in L.items():
        earlier = L[(t - 1, i)] if (t - 1, i) in L else O[i]
        row([(fl, 1.0), (earlier, -1.0)], LE, 0, f"flashkeep_{t}_{i}")
    if space.flash_binds:
        fbudget = (sc.units(problem.flash_budget_bytes) - math.floor(slack)) * shift
        for t, o in O.items():
            terms = [(L[(t, i)], b[i]) for i in space.live(t) if (t, i) in L] + [(o, b[t])]
            row(terms, LE, fbudget, f"flash_{t}")
    # runtime: compute and paging time (the store-all time is the constant part)
    if problem.runtime_budget_s is not None:
        slack_s = problem.runtime_budget_s - sc.store_all_time_s
        terms = [(v, nodes[i].compute_s / sc.time_s) for (t, i), v in R.items()]
        terms += [(v, nodes[i].pagein_s / sc.time_s) for (t, i), v in P.items()]
        terms += [(v, nodes[i].pageout_s / sc.time_s) for i, v in O.items()]
        # a margin for the solver's integrality tolerance, far below the simulator's 1e-9
        margin = 1e-6 * sum(c for _, c in terms) + 1e-12
        rhs = slack_s / sc.time_s
        row(terms, LE, max(rhs - margin, 0.0) if rhs >= 0 else rhs, "runtime")
    return MilpModel(problem, space, sc, prob, R, P, O, S, F, U, L, mem_b=b, relaxed=relax)
