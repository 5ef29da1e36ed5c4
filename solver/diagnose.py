"""Messages that tell the user what went wrong and which budgets would work (used by `solve`
and `bounds`, which must not import each other for it)."""

from __future__ import annotations

from .problem import Problem
from .simulate import min_feasible_ram, store_all_peak


def largest_working_set(problem: Problem) -> tuple[int, int]:
    """``(node id, bytes)`` of the single compute that needs the most RAM besides the static
    bytes: its operands, its output and its workspace (the first such node on ties)."""
    best, best_id = -1, 0
    for n in problem.nodes:
        ws = sum(problem.nodes[p].out_bytes for p in problem.preds[n.id]) + n.out_bytes \
            + n.workspace_bytes
        if ws > best:
            best, best_id = ws, n.id
    return best_id, max(best, 0)


def _static_parts(problem: Problem) -> str:
    """" (trained_params 3,072 B, ...)" from the problem's recorded static split, if any; a
    file's split that does not add up to static_bytes is not shown."""
    parts = problem.extra.get("static_breakdown")
    if not isinstance(parts, dict) or not parts:
        return ""
    items = [(k, v) for k, v in parts.items()
             if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0]
    if sum(v for _, v in items) != problem.static_bytes:
        return ""
    items.sort(key=lambda kv: -kv[1])
    return " (" + ", ".join(f"{k.replace('_', ' ')} {v:,} B" for k, v in items) + ")"


def minimum_text(problem: Problem) -> str:
    """What the minimum feasible RAM is made of, in one sentence."""
    node_id, ws = largest_working_set(problem)
    name = problem.nodes[node_id].name if problem.nodes else "-"
    return (f"the minimum feasible RAM is {min_feasible_ram(problem):,} B: static "
            f"{problem.static_bytes:,} B{_static_parts(problem)} plus the largest single working "
            f"set, {ws:,} B, of node {node_id} ({name!r}: its inputs, output and workspace)")


def infeasible_message(problem: Problem, strategy: str, why: str) -> str:
    """An InfeasibleError message: what the minimum consists of and which budgets would work.

    No range is offered when the minimum equals the store-all peak, and a flash or runtime
    budget is named as a way out only when the RAM budget is not below the minimum (no flash
    lowers that floor).
    """
    lo, hi = min_feasible_ram(problem), store_all_peak(problem)
    budget = problem.ram_budget_bytes
    below_floor = budget is not None and budget < lo
    minimum = minimum_text(problem)
    text = f"strategy {strategy!r}: {why}. {minimum[0].upper()}{minimum[1:]}"
    if lo >= hi:
        text += (f"; store-all needs the same, so {lo:,} B is what every schedule needs: ask "
                 f"for at least that")
    else:
        text += (f"; store-all needs {hi:,} B: a ram_budget_bytes from {lo:,} to {hi:,} B can "
                 f"work (strategy 'poet' reaches the minimum when flash is unlimited)")
    others = [name for name, v in (("runtime_budget_s", problem.runtime_budget_s),
                                   ("flash_budget_bytes", problem.flash_budget_bytes))
              if v is not None]
    if others and not below_floor:
        text += f", or relax {' and '.join(others)}"
    return text
