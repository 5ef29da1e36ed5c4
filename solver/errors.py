"""Exceptions of the solver side. Each message says what was wrong and what is allowed."""


class ProblemError(ValueError):
    """A problem (or its JSON file) is malformed: the message names the field."""


class ScheduleError(ValueError):
    """A schedule breaks a rule of the semantics: the message names the instruction, node and rule."""


class InfeasibleError(ValueError):
    """No schedule of the requested strategy fits the budgets."""


class TooLargeError(ValueError):
    """The MILP of a problem would need more memory than the machine has: refused before
    building it (the message gives its estimated size)."""


class DeadlineReached(Exception):
    """Internal: the time limit of a `solve` call passed during a step that checks it (building
    the MILP, running a heuristic). `done` of `total` `unit` says how far the step got (total
    None when unknown)."""

    def __init__(self, what: str, done: int, total: int | None = None, unit: str = "rows"):
        self.what, self.done, self.total, self.unit = what, done, total, unit
        of = f"{done} of {total}" if total is not None else f"{done}"
        super().__init__(f"time limit reached while {what} ({of} {unit})")
