"""Hand-made extreme schedules for the replay tests (real schedules, checked by the simulator).

* ``recompute_all``: keeps nothing between top-level steps: before node t runs, every operand
  it needs is recomputed from the static inputs (recursively), then everything is freed. Every
  forward node, dropout and BatchNorm included, is recomputed for each later reader.
* ``page_all``: pages every node out right after its first compute and frees it; later readers
  page it back in (and free it again). Every tensor goes through a file.
* ``mixed``: even-numbered nodes are paged, odd ones recomputed.

First computes come in id order (as eager), so random nodes replay exactly.
"""

from __future__ import annotations

from solver import Problem, Schedule


def _schedule(problem: Problem, page) -> Schedule:
    preds = problem.preds
    resident: set[int] = set()
    on_flash: set[int] = set()
    out: list[tuple[str, int]] = []

    def ensure(j: int) -> None:
        if j in resident:
            return
        if j in on_flash:
            out.append(("page_in", j))
        else:
            for p in preds[j]:
                ensure(p)
            out.append(("compute", j))
        resident.add(j)

    for t in range(problem.T):
        for p in preds[t]:
            ensure(p)
        out.append(("compute", t))
        resident.add(t)
        if page(t):
            out.append(("page_out", t))
            on_flash.add(t)
        for j in sorted(resident):
            out.append(("free", j))
        resident.clear()
    out += [("drop_flash", j) for j in sorted(on_flash)]
    return Schedule(out, problem_fingerprint=problem.fingerprint, strategy="custom")


def recompute_all(problem: Problem) -> Schedule:
    return _schedule(problem, lambda t: False)


def page_all(problem: Problem) -> Schedule:
    return _schedule(problem, lambda t: bool(problem.succs[t]))


def mixed(problem: Problem) -> Schedule:
    return _schedule(problem, lambda t: t % 2 == 0 and bool(problem.succs[t]))
