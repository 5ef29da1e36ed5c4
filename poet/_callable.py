"""Let a module double as the function it is named after (``poet.extract``, ``poet.sweep``).

``poet`` re-exports the functions ``extract`` and ``sweep``, which live in modules of the same
name; after ``import poet.sweep`` the package attribute is the module, not the function. Making
the module callable keeps ``poet.sweep(...)`` working whichever was imported first.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable


def make_module_callable(module_name: str, fn: Callable[..., Any]) -> None:
    """Calling the module `module_name` calls `fn`."""

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallableModule
