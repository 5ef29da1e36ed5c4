"""poet: energy-optimal training schedules (rematerialization + paging) for small devices.

    import poet, solver
    graph = poet.extract(model, loss_fn, inputs, targets, train="all")
    profile = poet.load_profile("nrf52840")
    problem = poet.make_problem(graph, profile, ram_budget="256KiB")
    result = solver.solve(problem, strategy="poet")
    report = poet.simulate(problem, result.schedule)

Names are loaded on first use, so `import poet` (and the `poet profiles` command) does not pay
for importing torch until something needs it.
"""

from __future__ import annotations

import importlib

from solver import Problem, Schedule, ScheduleError, simulate

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily)
_LAZY = {
    "extract": "poet._extract",
    "ExtractError": "poet._extract",
    "TrainingGraph": "poet.graph",
    "load_profile": "poet.profiles",
    "list_profiles": "poet.profiles",
    "Profile": "poet.profiles",
    "ProfileError": "poet.profiles",
    "make_problem": "poet.costs",
    "price_node": "poet.costs",
    "verify": "poet.replay",
    "execute": "poet.executor",
    "ScheduledStep": "poet.runtime",
    "sweep": "poet._sweep",
    "SweepResult": "poet._sweep",
}
_SUBMODULES = {"zoo", "profiles", "costs", "units", "graph", "replay", "runtime", "plot",
               "cli", "budgets", "runner", "sweepfiles", "figures", "sweep_figures",
               "schedule_figures"}

__all__ = ["Problem", "Schedule", "ScheduleError", "simulate", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"poet.{name}")
    raise AttributeError(f"module 'poet' has no attribute {name!r}")
