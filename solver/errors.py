"""Exceptions of the solver side. Each message says what was wrong and what is allowed."""


class ProblemError(ValueError):
    """A problem (or its JSON file) is malformed: the message names the field."""


class ScheduleError(ValueError):
    """A schedule breaks a rule of the semantics: the message names the instruction, node and rule."""


class InfeasibleError(ValueError):
    """No schedule of the requested strategy fits the budgets."""
