"""The staged space: which schedules the MILP (`solver.milp`) and the staged brute force
(`solver.bruteforce_staged`) search, as index sets over stages and positions.

The schedule space ("staged plans")
-----------------------------------
Stage t (t = 0..T-1) ends with the first compute of node t, so first computes come in id order.
Inside stage t the *positions* k = 0..t are visited in increasing order; at position k < t node k
may be materialised once, by a recompute (needs its operands in RAM) or by a page-in (needs it on
flash); at position t node t is computed for the first time and may then be paged out (the only
page-out of a node: its copy on flash serves every later page-in). A tensor is freed right after
the last compute in the stage that reads it unless it is kept for a later stage, and a flash copy
is dropped right after its last page-in. `solver.plans.plan_to_schedule` turns a plan into
instructions with exactly this minimal residency, so a plan's energy is the sum of its computes
and page transfers.

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
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .errors import DeadlineReached
from .problem import Problem

BACKWARD_REMAT = ("far", "all", "none")
FORWARD_STAGES = ("all", "skips", "none")
READ_IN_STAGE = ("page_in", "all", "none")


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
    # a time.perf_counter() value: construction raises DeadlineReached once it has passed
    deadline: float | None = field(default=None, compare=False, repr=False)

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

    def reads(self, t: int, i: int) -> bool:
        """Whether node t's first compute reads i."""
        return t in self._succ_sets[i]

    def must_be_read(self, t: int, i: int, how: str) -> bool:
        """Whether materialising i in stage t (how: "compute" | "page_in") requires a later
        compute of the same stage to read it (the read_in_stage rule; t itself always reads
        its operands)."""
        if self.reads(t, i) or self.read_in_stage == "none":
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
        recompute, pageable, horizon = self.recompute, self.pageable, self.horizon
        read_rule = self.read_in_stage
        live: list[int] = []
        for t in range(T):
            if self.deadline is not None and time.perf_counter() > self.deadline:
                raise DeadlineReached("laying out the MILP's stages", t, T, "stages")
            # the nodes live in t: those of t-1 still within their horizon, and t-1 itself
            live = [i for i in live if horizon[i] >= t] + ([t - 1] if t and horizon[t - 1] >= t
                                                             else [])
            opts = {k: (recompute[k], pageable[k]) for k in live
                    if (recompute[k] or pageable[k]) and self._may_materialise(t, k)}
            # a materialisation that must be read in its stage needs a reader that may run
            # there; dropping a recompute can leave its operands without one: a worklist over
            # the count of each node's readers that may be computed in t
            # (t counts as a reader, so a node t reads never comes to 0)
            if read_rule != "none":
                readers = {k: sum(1 for j in succs[k] if j == t or opts.get(j, (False,))[0])
                           for k in opts}
                work = [k for k, n in readers.items() if n == 0]
                while work:                     # k: no reader left, so no page-in either
                    k = work.pop()
                    r = opts[k][0]
                    if r and read_rule != "all":
                        opts[k] = (True, False)
                        continue
                    del opts[k]
                    if r:                       # k no longer computable in t
                        for q in self.problem.preds[k]:
                            if q in readers:
                                readers[q] -= 1
                                if readers[q] == 0 and q in opts:
                                    work.append(q)
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
                 read_in_stage: str = "all", deadline: float | None = None) -> StagedSpace:
    """The staged space of `problem` with recomputation and/or paging switched on.

    forward_stages: what a forward stage t may recompute or page in: "all" (any live node),
    "skips" (only inputs of t that skip over t-1, as a residual or long skip connection needs),
    "none". Loss and backward stages may always materialise any live node.
    read_in_stage: "all" (a recompute or page-in must be read by a later compute of its own
    stage), "page_in" (page-ins only: paging in earlier only holds RAM longer, so this loses
    nothing) or "none". deadline: a `time.perf_counter()` value; DeadlineReached once it passes.
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
                       tuple(pageable), flash_binds, forward_stages, read_in_stage, deadline)

