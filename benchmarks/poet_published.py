"""POET's published MILP next to ours, on the same problem files.

    python benchmarks/poet_published.py problem.json [...] [--fractions 0.25 0.5 0.75]
                                        [--backend highs] [--time-limit 120] [--as-published]

The model below is written from the paper's description (Patil et al., ICML 2022, section 4) and
DESIGN.md, not from POET's code: every family indexed by all T stages x T nodes, as published --
R (compute), S_RAM and S_SSD (resident in RAM / on flash at the start of a stage), M_in and M_out
(page in / out during a stage), FREE per (stage, edge) in Checkmate's linearisation, and a
continuous U per (stage, node) for the RAM after each compute. Variables that cannot be non-zero
(a node in a stage before its own) are created and then fixed to zero by constraints, as the
published model does.

By default the known defects (DESIGN.md) are corrected so that its schedules can be replayed by
the simulator and compared: the runtime budget includes paging time, a paged-in tensor counts in
RAM from the stage where it arrives, static bytes count against the budget, and a tensor is not
computed or paged in while it is resident, nor paged out twice. --as-published keeps the defects
(the simulator then often rejects the schedule, which the table reports). The watchdog is the
backend's: HiGHS is interrupted from its callback, CBC is killed when it overruns its limit (it
ignores the limit while preprocessing large models).

Columns: variables, constraints, build seconds, status, solve seconds, the energy overhead of
the schedule as the simulator replays it ("rejected" if it does not), and the same for our
staged MILP (`solver.solve`) with the same backend and time limit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pulp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from solver import (
    Problem,
    Schedule,
    ScheduleError,
    min_feasible_ram,
    simulate,
    store_all_peak,
)
from solver.backends import run as run_backend
from solver.solve import solve


class PublishedModel:
    """The all-pairs POET-style model of a problem (see the module docstring)."""

    def __init__(self, problem: Problem, *, as_published: bool = False):
        self.problem = problem
        T = problem.T
        nodes, preds, succs = problem.nodes, problem.preds, problem.succs
        e0 = problem.store_all_energy_j or 1.0
        prob = pulp.LpProblem("poet_published", pulp.LpMinimize)
        B = pulp.LpBinary

        def fam(name):
            return {(t, i): prob.add_variable(f"{name}_{t}_{i}", 0, 1, B)
                    for t in range(T) for i in range(T)}

        R, SR, SF, MI, MO = fam("R"), fam("SRAM"), fam("SSSD"), fam("Min"), fam("Mout")
        FREE = {(t, i, k): prob.add_variable(f"FREE_{t}_{i}_{k}", 0, 1, B)
                for t in range(T) for i in range(T) for k in list(succs[i]) + [i]}
        U = {(t, k): prob.add_variable(f"U_{t}_{k}", 0, None) for t in range(T) for k in range(T)}
        self.R, self.SR, self.SF, self.MI, self.MO, self.FREE = R, SR, SF, MI, MO, FREE
        lsum = pulp.lpSum
        prob += lsum(nodes[i].compute_j / e0 * R[t, i] + nodes[i].pagein_j / e0 * MI[t, i]
                     + nodes[i].pageout_j / e0 * MO[t, i] for t in range(T) for i in range(T))
        budget = problem.ram_budget_bytes
        # as published, parameters and gradients sit outside the budget
        static = 0 if as_published else problem.static_bytes
        for t in range(T):
            prob += R[t, t] == 1
            for i in range(T):
                if i > t:      # upper triangle: created, then zeroed
                    prob += R[t, i] == 0
                    prob += MI[t, i] == 0
                    prob += MO[t, i] == 0
                if i >= t:
                    prob += SR[t, i] == 0
                    prob += SF[t, i] == 0
                if t + 1 < T:
                    prob += SR[t + 1, i] <= SR[t, i] + R[t, i] + MI[t, i]
                    prob += SF[t + 1, i] <= SF[t, i] + MO[t, i]
                prob += MI[t, i] <= SF[t, i]
                prob += MO[t, i] <= SR[t, i] + R[t, i]
                if not as_published:
                    prob += SR[t, i] + R[t, i] + MI[t, i] <= 1
                    prob += MO[t, i] + SF[t, i] <= 1
                for p in preds[i]:
                    prob += R[t, i] <= R[t, p] + SR[t, p] + MI[t, p]
                # Checkmate's FREE: i may be freed after k only if k ran, i is not kept, and no
                # later consumer of i runs in this stage
                for k in list(succs[i]) + [i]:
                    f = FREE[t, i, k]
                    prob += f <= R[t, k]
                    if t + 1 < T:
                        prob += f <= 1 - SR[t + 1, i]
                    for j in succs[i]:
                        if j > k:
                            prob += f <= 1 - R[t, j]
            # RAM after each compute of stage t
            for k in range(T):
                prev = U[t, k - 1] if k > 0 else (
                    static + lsum(nodes[i].out_bytes * SR[t, i] for i in range(T))
                    + (0 if as_published else lsum(nodes[i].out_bytes * MI[t, i]
                                                    for i in range(T))))
                frees = lsum(nodes[i].out_bytes * FREE[t, i, kk]
                             for (tt, i, kk) in self._frees_at(t, k - 1)) if k > 0 else 0
                prob += U[t, k] == prev + nodes[k].out_bytes * R[t, k] - frees
                prob += U[t, k] + nodes[k].workspace_bytes * R[t, k] <= budget
        if problem.runtime_budget_s is not None:
            prob += lsum(nodes[i].compute_s * R[t, i] + (0 if as_published else (
                nodes[i].pagein_s * MI[t, i] + nodes[i].pageout_s * MO[t, i]))
                for t in range(T) for i in range(T)) <= problem.runtime_budget_s
        self.prob = prob
        self.e0 = e0

    def _frees_at(self, t, k):
        if not hasattr(self, "_by_k"):
            self._by_k = {}
            for key in self.FREE:
                self._by_k.setdefault((key[0], key[2]), []).append(key)
        return self._by_k.get((t, k), [])

    def schedule(self) -> Schedule:
        """Instructions in the model's own order: per stage, per node k: page in, compute, page
        out, then the frees after k; at the end of a stage, free what is not kept and drop from
        flash what is not kept there."""
        T = self.problem.T

        def on(v):
            return v.varValue is not None and v.varValue > 0.5
        ins: list[tuple[str, int]] = []
        ram: set[int] = set()
        flash: set[int] = set()
        for t in range(T):
            for k in range(T):
                if on(self.MI[t, k]):
                    ins.append(("page_in", k))
                    ram.add(k)
                if on(self.R[t, k]):
                    ins.append(("compute", k))
                    ram.add(k)
                if on(self.MO[t, k]):
                    ins.append(("page_out", k))
                    flash.add(k)
                for (tt, i, kk) in self._frees_at(t, k):
                    if on(self.FREE[tt, i, kk]) and i in ram:
                        ins.append(("free", i))
                        ram.discard(i)
            keep = {i for i in ram if t + 1 < T and on(self.SR[t + 1, i])}
            for i in sorted(ram - keep):
                ins.append(("free", i))
            ram = keep
            keepf = {i for i in flash if t + 1 < T and on(self.SF[t + 1, i])}
            for i in sorted(flash - keepf):
                ins.append(("drop_flash", i))
            flash = keepf
        return Schedule(ins, problem_fingerprint=self.problem.fingerprint, strategy="poet-published",
                        ram_budget_bytes=self.problem.ram_budget_bytes)


def compare(problem: Problem, frac: float, backend: str, time_limit: float, gap: float,
            as_published: bool) -> dict:
    lo, hi = min_feasible_ram(problem), store_all_peak(problem)
    p = problem.with_budgets(ram_budget_bytes=lo + int(frac * (hi - lo)))
    e0 = p.store_all_energy_j
    t0 = time.perf_counter()
    model = PublishedModel(p, as_published=as_published)
    build_s = time.perf_counter() - t0
    res = run_backend(model.prob, backend, time_limit_s=time_limit, gap_rel=gap, gap_abs=gap)
    row = {"problem": p.name, "fraction": frac, "vars": len(model.prob.variables()),
           "cons": len(model.prob.constraints()), "build_s": build_s, "status": res.status,
           "solve_s": res.solve_s, "overhead": None}
    if res.has_solution:
        try:
            rep = simulate(p, model.schedule())
            row["overhead"] = f"{100 * (rep.energy_j / e0 - 1):.3f}%"
        except ScheduleError as e:
            row["overhead"] = "rejected: " + str(e)[:60]
    ours = solve(p, backend=backend, time_limit_s=time_limit, gap=gap)
    row.update(ours_vars=ours.n_variables, ours_cons=ours.n_constraints, ours_status=ours.status,
               ours_s=ours.solve_s,
               ours_overhead=f"{100 * (ours.objective_j / e0 - 1):.3f}%"
               if ours.objective_j is not None else None)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("problems", nargs="+", help="problem JSON files")
    ap.add_argument("--fractions", nargs="*", type=float, default=[0.25, 0.5, 0.75])
    ap.add_argument("--backend", default="highs")
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--gap", type=float, default=1e-4)
    ap.add_argument("--as-published", action="store_true",
                    help="keep the published model's defects")
    args = ap.parse_args(argv)
    keys = ["problem", "fraction", "vars", "cons", "build_s", "status", "solve_s", "overhead",
            "ours_vars", "ours_cons", "ours_status", "ours_s", "ours_overhead"]
    print("\t".join(keys))
    for path in args.problems:
        problem = Problem.load(path)
        for frac in args.fractions:
            row = compare(problem, frac, args.backend, args.time_limit, args.gap,
                          args.as_published)
            print("\t".join(f"{row[k]:.1f}" if isinstance(row[k], float) and k.endswith("_s")
                            else str(row[k]) for k in keys), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
