"""The energy-optimal schedule as a staged mixed-integer linear program (built with PuLP).

The schedule space is `solver.staged`'s (stages, positions, and which materialisations exist);
plans and their schedules are `solver.plans`'. The model is built from the numbers of
`solver.reductions.Scale` (memory in units, energy relative to store-all) over the index sets of
`solver.reductions.Stage`; `MilpModel.plan` reads a plan back, `Stage.invert` makes it a
schedule and `Scaling.to_energy_j` prices the objective.

The MILP (B = RAM budget - static bytes, memory in units g = gcd of all sizes; energies divided by
E0 = the store-all energy, so the objective is the overhead above store-all)
-------------------------------------------------------------------------------------------
binary    R[t,i]  recompute i at position i of stage t        (i < t <= H(i), remat)
binary    P[t,i]  page i in at position i of stage t          (i < t <= H(i), paging)
binary    O[i]    page i out right after its first compute     (paging, i read by someone)
cont.     S[t,i]  i kept in RAM from stage t-1 into stage t    (i < t <= H(i)); one column for
                  a run of stages that neither read, materialise nor free i ("quiet"): a copy
                  kept into such a stage is read later, so S[t+1,i] = S[t,i] at every plan's
                  minimal residency (on 8-block op-level BERT 67,511 of 106,107 S columns and as
                  many keep rows go)
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
      sum_{i not in preds t} b_i S[t+1,i] <= B - b_t - w_t - sum_{i in preds t} b_i
                                   what is kept past t and t's operands fit at t (integer_keep)
      sum s_i R + s^in_i P + s^out_i O <= runtime budget - store-all time   (if set)
      sum_i b_i L[t,i] + b_t O[t] <= flash budget            (rows at page-outs, if it binds)
R, P and O are the decisions: for integer R, P, O the continuous rows force S, F and U at least
up to the minimal residency (a consumer needs m - sum F = 1, so nothing it reads is freed early), so
the decoded minimal-residency schedule never holds more RAM than a row allowed. S is declared
binary too (integer_keep=True, the default), with the keepcap rows: the minimal residency of
every plan keeps a whole copy or none and meets them, so this removes no plan
(tests/test_milp.py checks it against the staged brute force), and the solver may branch on
"keep i past stage t" and separate cover cuts from rows in binary columns. The LP relaxation
keeps its value (the keepcap rows are sums of RAM and keep rows); what rises is the solver's
bound once its cuts are in. 8-block layer-level BERT on an nRF52840 at 50% (31,887 columns),
`solve` with HiGHS for 600 s beside the same run without them: bound +2.80% above store-all
(was +2.56%; the LP gives +2.45%), best schedule +5.83% (was +6.78%; DTR +6.88%), the LP being
fractional in 1,051 of its 1,059 non-zero recomputes (974 of them below 0.1) and in 3,412 of its
5,380 non-zero keep columns. F[t,i,t] (a free at the end of the stage) is implied by the
inequality in the S row and needs no column.

      R[t,i] + P[t,i] <= sum_{j in succ(i) computable in t, j < t} R[t,j]   (read in stage)
The MILP's feasible plans are exactly the staged plans whose minimal residency fits: with
read_in_stage="all" every copy is read, so the MILP can always free it right after its last
reader (with "page_in"/"none" a copy nobody reads may have to be held until a reader's
position, which only adds energy and RAM and so never matters for an optimum).
`solver.bruteforce_staged` searches the same space independently.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import pulp

from .errors import DeadlineReached, ProblemError
from .plans import StagedPlan, copies, drop_useless
from .problem import Problem
from .reductions import Scale, ScaledProblem, Scaling, Stage
from .staged import StagedSpace


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
        """The integer decision columns R, P and O (S, binary too unless integer_keep is off,
        follows from them)."""
        return 0 if self.relaxed else len(self.R) + len(self.P) + len(self.O)

    # -- values ------------------------------------------------------------------------------
    def overhead_value(self) -> float:
        """Objective at the current variable values: the energy above store-all, in objective
        units (`scaling.energy_j` joules each)."""
        v = pulp.value(self.prob.objective)
        return float(v) if v is not None else 0.0

    def energy_value_j(self) -> float:
        """Joules at the current variable values (store-all energy + objective x scale)."""
        return self.scaling.to_energy_j(self.overhead_value())

    def to_energy_j(self, overhead: float) -> float:
        """Joules of an objective value or bound of this model (`Scale.invert`)."""
        return Scale.invert(overhead, self.scaling)

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
        order = copies(self.problem, plan)
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


# ---------------------------------------------------------------------------------------------
# Building the model: columns, then the rows of each stage, then flash and runtime
# ---------------------------------------------------------------------------------------------
LE, EQ = pulp.LpConstraintLE, pulp.LpConstraintEQ
_CHECK_EVERY = 512   # columns / rows between two looks at the clock (a power of two; ~10 ms)


@dataclass
class _Builder:
    """A model under construction: the PuLP problem, the scaled numbers, the column families
    (keyed as in the module docstring) and F's positions per (t, i)."""

    space: StagedSpace
    scaled: ScaledProblem
    prob: pulp.LpProblem
    cat: str
    R: dict = field(default_factory=dict)
    P: dict = field(default_factory=dict)
    O: dict = field(default_factory=dict)
    S: dict = field(default_factory=dict)
    F: dict = field(default_factory=dict)
    U: dict = field(default_factory=dict)
    L: dict = field(default_factory=dict)
    free_pos: dict = field(default_factory=dict)
    keep_cat: str = pulp.LpContinuous   # S's category: binary when integer_keep (and not relax)
    deadline: float | None = None     # time.perf_counter() value; None: no limit
    n_cols: int = 0
    n_rows: int = 0

    def check_deadline(self) -> None:
        """Raise DeadlineReached if the deadline has passed."""
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise DeadlineReached("building the MILP", self.n_rows, None, "rows")

    def var(self, name: str, cat: str = pulp.LpContinuous, ub: float | None = 1.0):
        """A new column in [0, ub]."""
        self.n_cols += 1
        if not self.n_cols & _CHECK_EVERY - 1:
            self.check_deadline()
        return self.prob.add_variable(name, lowBound=0.0, upBound=ub, cat=cat)

    def row(self, terms, sense, rhs: float, name: str) -> None:
        """Add the row sum(coef * var) <sense> rhs (zero coefficients left out)."""
        self.n_rows += 1
        if not self.n_rows & _CHECK_EVERY - 1:
            self.check_deadline()
        expr = pulp.LpAffineExpression([(v, c) for v, c in terms if c != 0])
        self.prob.addConstraint(pulp.LpConstraint(expr, sense=sense, rhs=rhs, name=name))

    def m_terms(self, t: int, i: int):
        """m(t,i) = S + R + P as (var, coef) terms; None for the first compute (the constant 1)."""
        if t == i:
            return None
        return [(x[(t, i)], 1.0) for x in (self.S, self.R, self.P) if (t, i) in x]


def _columns(bld: _Builder) -> None:
    """Create R, P, O, S, L and F, only where they can be non-zero (U comes with its rows)."""
    space, cat = bld.space, bld.cat
    for t in range(space.T):
        for i in space.live(t):
            bld.free_pos[(t, i)] = space.free_positions(t, i)
    for i in range(space.T):
        if space.pageable[i]:
            bld.O[i] = bld.var(f"O_{i}", cat)
        for t in space.stages(i):
            if t - 1 > i and _quiet(space, t - 1, i, bld.free_pos[(t - 1, i)]):
                bld.S[(t, i)] = bld.S[(t - 1, i)]       # one column for the quiet run
            else:
                bld.S[(t, i)] = bld.var(f"S_{t}_{i}", bld.keep_cat)
            if space.can_recompute(t, i):
                bld.R[(t, i)] = bld.var(f"R_{t}_{i}", cat)
            if space.can_page_in(t, i):
                bld.P[(t, i)] = bld.var(f"P_{t}_{i}", cat)
            if space.pageable[i] and space.flash_binds:
                bld.L[(t, i)] = bld.var(f"L_{t}_{i}")
    for t in range(space.T):
        for i in space.live(t):
            for k in bld.free_pos[(t, i)]:
                bld.F[(t, i, k)] = bld.var(f"F_{t}_{i}_{k}")


def _quiet(space: StagedSpace, t: int, i: int, free: list[int]) -> bool:
    """Whether stage t neither reads, materialises nor frees i (free: its free positions) and i
    may be kept past it: then S[t+1,i] = S[t,i] at every plan's minimal residency (a copy kept
    into t is read later, so it is kept past t too), and the two share one column."""
    return (not free and t + 1 in space.stages(i) and not space.can_recompute(t, i)
            and not space.can_page_in(t, i) and not space.reads(t, i))


def _objective(bld: _Builder, cutoff_overhead: float | None) -> None:
    """min sum c_i R[t,i] + p^in_i P[t,i] + p^out_i O[i] (in objective units), and
    objective <= cutoff if one is given."""
    sp = bld.scaled
    obj = [(v, sp.compute[i]) for (t, i), v in bld.R.items()]
    obj += [(v, sp.page_in[i]) for (t, i), v in bld.P.items()]
    obj += [(v, sp.page_out[i]) for i, v in bld.O.items()]
    bld.prob.setObjective(pulp.LpAffineExpression([(v, c) for v, c in obj if c != 0]))
    if cutoff_overhead is not None:
        bld.row(obj, LE, cutoff_overhead, "cutoff")


def _stage_rows(bld: _Builder, t: int) -> None:
    """The residency rows of stage t: one copy, keep / free, operands, read in stage."""
    space, S, F, R, P = bld.space, bld.S, bld.F, bld.R, bld.P
    # m(t,i) <= 1;  S[t+1,i] + sum_k F[t,i,k] <= m(t,i)
    for i in space.live(t):
        m = bld.m_terms(t, i)
        if len(m) > 1:
            bld.row(m, LE, 1, f"once_{t}_{i}")
        frees = [(F[(t, i, k)], 1.0) for k in bld.free_pos[(t, i)]]
        kept = [(S[(t + 1, i)], 1.0)] if (t + 1, i) in S else []
        if kept and S[(t + 1, i)] is S.get((t, i)):
            continue                             # a quiet stage: S[t+1,i] is S[t,i]
        if kept or frees:
            bld.row(kept + [(v, -c) for v, c in m] + frees, LE, 0, f"keep_{t}_{i}")
    # R[t,j] <= m(t,i) - sum_{k<j} F[t,i,k] for i in preds(j)  (R[t,t] = 1)
    for j in space.computable(t):
        for i in space.problem.preds[j]:
            m = bld.m_terms(t, i)
            frees = [(F[(t, i, k)], 1.0) for k in bld.free_pos[(t, i)] if k < j]
            if j == t:
                bld.row([(v, -c) for v, c in m] + frees, LE, -1, f"need_{t}_{j}_{i}")
            else:
                bld.row([(R[(t, j)], 1.0)] + [(v, -c) for v, c in m] + frees, LE, 0,
                        f"need_{t}_{j}_{i}")
    # R[t,k] + P[t,k] <= sum_{j in succ(k), j < t} R[t,j]  where the copy must be read
    for k in space.candidates(t):
        mats = [(x[(t, k)], 1.0) for x, how in ((R, "compute"), (P, "page_in"))
                if (t, k) in x and space.must_be_read(t, k, how)]
        if mats:
            readers = [(R[(t, j)], -1.0) for j in space.readers(t, k) if j != t]
            bld.row(mats + readers, LE, 0, f"read_{t}_{k}")


def _ram_rows(bld: _Builder, t: int) -> None:
    """The RAM rows of stage t, just before and at each materialisation:
    U[t,k1] = sum_i b_i S[t,i];  U[t,k'] = U[t,k] + b_k (R + P)[t,k] - sum_i b_i F[t,i,k];
    U[t,k] + (b_k + w_k) R[t,k] + b_k P[t,k] <= B."""
    space, sp, S, R, P, U = bld.space, bld.scaled, bld.S, bld.R, bld.P, bld.U
    b, w = sp.b, sp.w
    f_at: dict[int, list] = {}
    for i in space.live(t) + [t]:
        for k in bld.free_pos.get((t, i), ()):
            f_at.setdefault(k, []).append((bld.F[(t, i, k)], b[i]))
    prev = None
    for k in space.candidates(t) + [t]:
        u = U[(t, k)] = bld.var(f"U_{t}_{k}", ub=None)
        if prev is None:
            bld.row([(u, 1.0)] + [(S[(t, i)], -b[i]) for i in space.live(t)], EQ, 0,
                    f"ram0_{t}")
        else:
            grow = [(x[(t, prev)], -b[prev]) for x in (R, P) if (t, prev) in x]
            bld.row([(u, 1.0), (U[(t, prev)], -1.0)] + grow + f_at.get(prev, []), EQ, 0,
                    f"ram_{t}_{k}")
        if k == t:
            bld.row([(u, 1.0)], LE, sp.ram - b[t] - w[t], f"mem_{t}_{k}")
        else:
            terms = [(u, 1.0)]
            if (t, k) in R:
                terms.append((R[(t, k)], b[k] + w[k]))
            if (t, k) in P:
                terms.append((P[(t, k)], b[k]))
            bld.row(terms, LE, sp.ram, f"mem_{t}_{k}")
        prev = k


def _keep_items(space: StagedSpace, t: int) -> list[int]:
    """Nodes that may be kept from stage t into t+1 and are not operands of t."""
    preds = space.problem.preds[t]
    return [i for i in space.live(t) if t + 1 in space.stages(i) and i not in preds]


def _keep_rows(bld: _Builder, t: int) -> None:
    """sum b_i S[t+1,i] (i kept past t, not an operand of t) <= B - b_t - w_t - b(operands of
    t): whatever is kept past t is resident at t's compute, with t's operands. Implied by the RAM
    rows for the LP, but a row in binary columns only, from which the solver separates cover
    cuts."""
    items = _keep_items(bld.space, t)
    if items:
        b, w = bld.scaled.b, bld.scaled.w
        operands = set(bld.space.problem.preds[t])
        rhs = bld.scaled.ram - b[t] - w[t] - sum(b[i] for i in operands)
        bld.row([(bld.S[(t + 1, i)], b[i]) for i in items], LE, rhs, f"keepcap_{t}")


def _flash_rows(bld: _Builder) -> None:
    """A page-in needs the copy written after the first compute and still kept:
    P[t,i] <= O[i], or P[t,i] <= L[t,i] <= L[t-1,i], L[i+1,i] <= O[i] and
    sum_i b_i L[t,i] + b_t O[t] <= flash budget when a flash budget binds."""
    space, O, L = bld.space, bld.O, bld.L
    for (t, i), p in bld.P.items():
        bld.row([(p, 1.0), (L[(t, i)] if space.flash_binds else O[i], -1.0)], LE, 0,
                f"onflash_{t}_{i}")
    for (t, i), fl in L.items():
        earlier = L[(t - 1, i)] if (t - 1, i) in L else O[i]
        bld.row([(fl, 1.0), (earlier, -1.0)], LE, 0, f"flashkeep_{t}_{i}")
    if space.flash_binds:
        b = bld.scaled.b
        for t, o in O.items():
            terms = [(L[(t, i)], b[i]) for i in space.live(t) if (t, i) in L] + [(o, b[t])]
            bld.row(terms, LE, bld.scaled.flash, f"flash_{t}")


def _runtime_row(bld: _Builder) -> None:
    """sum s_i R + s^in_i P + s^out_i O <= runtime budget - store-all time (if a budget is set),
    less a margin for the solver's integrality tolerance, far below the simulator's 1e-9."""
    sp = bld.scaled
    if sp.runtime is None:
        return
    terms = [(v, sp.compute_s[i]) for (t, i), v in bld.R.items()]
    terms += [(v, sp.page_in_s[i]) for (t, i), v in bld.P.items()]
    terms += [(v, sp.page_out_s[i]) for i, v in bld.O.items()]
    margin = 1e-6 * sum(c for _, c in terms) + 1e-12
    rhs = sp.runtime
    bld.row(terms, LE, max(rhs - margin, 0.0) if rhs >= 0 else rhs, "runtime")


def build_milp(problem: Problem, *, remat: bool = True, paging: bool = True,
               backward_remat: str = "far", forward_stages: str = "skips",
               read_in_stage: str = "all", relax: bool = False,
               cutoff_overhead: float | None = None, mem_scale: bool = True,
               objective_scale: float | None = None, deadline: float | None = None,
               space: StagedSpace | None = None, integer_keep: bool = True) -> MilpModel:
    """Build the staged MILP of `problem` (see the module docstring for the math).

    remat / paging switch recomputation and paging (both off: only store-all-like plans).
    relax=True makes R, P, O continuous (the LP relaxation). cutoff_overhead, if given, adds
    objective <= cutoff (in objective units above store-all). mem_scale=False keeps memory rows
    in whole units; objective_scale overrides the objective units per store-all energy. Needs a
    RAM budget; raises ProblemError when the budget is below the static bytes.

    deadline: a `time.perf_counter()` value; the builder looks at the clock every few hundred
    columns and rows and raises `solver.errors.DeadlineReached` (rows built so far) once it has
    passed. space: the staged space of this problem under the same options, if the caller has
    made it already (`milp_size` needs it too). integer_keep=False leaves S continuous and
    drops the keepcap rows (S is binary at every plan's minimal residency; see the module
    docstring).
    """
    if problem.ram_budget_bytes is None:
        raise ProblemError("ram_budget_bytes is not set: the MILP needs a RAM budget "
                           "(without one store-all is optimal)")
    if problem.ram_budget_bytes < problem.static_bytes:
        raise ProblemError(f"ram_budget_bytes ({problem.ram_budget_bytes}) is below static_bytes "
                           f"({problem.static_bytes}): nothing can be scheduled")
    if space is None:
        space, _ = Stage(remat, paging, backward_remat, forward_stages, read_in_stage).apply(
            problem)
    elif space.problem is not problem:
        raise ValueError("space must be the staged space of the problem being built")
    scaled, scaling = Scale(objective_scale, mem_scale).apply(problem)
    name = re.sub(r"[^A-Za-z0-9_]", "_", problem.name or "poet")[:60] or "poet"
    bld = _Builder(space, scaled, pulp.LpProblem(name, pulp.LpMinimize),
                   pulp.LpContinuous if relax else pulp.LpBinary, deadline=deadline,
                   keep_cat=pulp.LpBinary if integer_keep and not relax else pulp.LpContinuous)
    bld.check_deadline()
    _columns(bld)
    _objective(bld, cutoff_overhead)
    for t in range(problem.T):
        _stage_rows(bld, t)
        _ram_rows(bld, t)
        if integer_keep:
            _keep_rows(bld, t)
        bld.check_deadline()
    _flash_rows(bld)
    _runtime_row(bld)
    return MilpModel(problem, space, scaling, bld.prob, bld.R, bld.P, bld.O, bld.S, bld.F,
                     bld.U, bld.L, mem_b=scaled.b, relaxed=relax)


# ---------------------------------------------------------------------------------------------
# The model's size, counted before building it
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MilpSize:
    """What `build_milp` creates for a staged space: columns (the integer decisions R, P and O
    among them; S is declared binary as well but follows from those), rows and
    nonzeros (row entries plus objective entries; exact but for coefficients that happen to be 0,
    such as the bytes of a zero-byte node, which the builder leaves out)."""

    columns: int
    integer: int
    rows: int
    nonzeros: int


def milp_size(space: StagedSpace, *, runtime: bool, cutoff: bool = False,
              deadline: float | None = None, integer_keep: bool = True) -> MilpSize:
    """Count the columns, rows and nonzeros `build_milp` makes from `space` (runtime: the problem
    has a runtime budget; cutoff: an objective cutoff row is added), by the same loops over the
    index sets as the builder but without creating anything: time and memory proportional to the
    number of (stage, node) pairs, a small fraction of building (0.03 s where building took
    0.9 s, 0.14 s for 5 s); integer_keep as in `build_milp`. With a deadline (a
    `time.perf_counter()` value) it raises DeadlineReached (stages counted) once the deadline
    has passed."""
    T, preds = space.T, space.problem.preds
    n_o = sum(space.pageable)
    n_s = n_r = n_p = n_l = 0
    for i in range(T):
        for t in space.stages(i):
            n_s += 1
            n_r += space.can_recompute(t, i)
            n_p += space.can_page_in(t, i)
            n_l += space.pageable[i] and space.flash_binds
    n_f = n_u = rows = nnz = 0
    for t in range(T):
        if deadline is not None and time.perf_counter() > deadline:
            raise DeadlineReached("counting the MILP", t, T, "stages")
        live, cands = space.live(t), space.candidates(t)
        free = {i: space.free_positions(t, i) for i in live}
        n_f += sum(len(ks) for ks in free.values())
        n_u += len(cands) + 1

        def m(i: int) -> int:   # terms of m(t,i) = S + R + P (S exists for every live i)
            return 1 + space.can_recompute(t, i) + space.can_page_in(t, i)
        for i in live:           # once_, keep_
            mi = m(i)
            rows += mi > 1
            nnz += mi if mi > 1 else 0
            kept = (t + 1) in space.stages(i)
            if kept and _quiet(space, t, i, free[i]):
                n_s -= 1                     # S[t+1,i] is S[t,i]: no column, no keep_ row
                continue
            if kept or free[i]:
                rows += 1
                nnz += kept + mi + len(free[i])
        for j in space.computable(t):   # need_
            for i in preds[j]:
                rows += 1
                nnz += (j != t) + m(i) + sum(1 for k in free[i] if k < j)
        for k in cands:          # read_
            mats = sum(1 for ok, how in ((space.can_recompute(t, k), "compute"),
                                         (space.can_page_in(t, k), "page_in"))
                       if ok and space.must_be_read(t, k, how))
            if mats:
                rows += 1
                nnz += mats + sum(1 for j in space.readers(t, k) if j != t)
        f_at: dict[int, int] = {}   # ram0_ / ram_, mem_
        for ks in free.values():
            for k in ks:
                f_at[k] = f_at.get(k, 0) + 1
        prev = None
        for k in cands + [t]:
            rows += 2
            if prev is None:
                nnz += 1 + len(live)
            else:
                nnz += 2 + space.can_recompute(t, prev) + space.can_page_in(t, prev) \
                    + f_at.get(prev, 0)
            nnz += 1 if k == t else 1 + space.can_recompute(t, k) + space.can_page_in(t, k)
            prev = k
        if integer_keep:         # keepcap_
            n_keep = len(_keep_items(space, t))
            rows += n_keep > 0
            nnz += n_keep
    rows += n_p + n_l                      # onflash_, flashkeep_
    nnz += 2 * (n_p + n_l)
    if space.flash_binds:                  # flash_
        rows += n_o
        nnz += n_o + sum(1 for t in range(T) if space.pageable[t]
                         for i in space.live(t) if space.pageable[i])
    n_obj = n_r + n_p + n_o
    rows += runtime + cutoff
    nnz += n_obj * (1 + runtime + cutoff)
    return MilpSize(columns=n_o + n_s + n_r + n_p + n_l + n_f + n_u, integer=n_obj, rows=rows,
                    nonzeros=nnz)
