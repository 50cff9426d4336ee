"""Package namespaces whose names load their module on first use.

A handler package (`handlers.backup`, `handlers.drill`, ...) names its public API in one place, but
importing it must not import psycopg, boto3 or httpx: `dbops --help` and `dbops migrate check`
read every area's declarations and settings checks, and a settings check needs only the package's
settings module. So the package's `__getattr__` imports the module that defines a name when the
name is first asked for (PEP 562), and keeps it, so later lookups are plain attribute reads.
The package also imports the same names under `if TYPE_CHECKING:`, for readers, type checkers and
the import contract (tests/test_layout.py); tests/test_imports.py checks that both lists agree.

A public name may be spelled like the module it comes from (`handlers.indexes.review`, the function
in review.py). Importing that submodule, from anywhere, makes Python bind the module to the name on
the package; the package's `__setattr__` then keeps the function, as the eager `from .review import
review` did, so `indexes.review(...)` works whichever module was loaded first.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Callable, Mapping


class _NamesakePackage(types.ModuleType):
    """A package with a public name spelled like the submodule that defines it."""

    _namesakes: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if (name in self._namesakes and isinstance(value, types.ModuleType)
                and value.__name__ == f"{self.__name__}.{name}"):
            value = getattr(value, name)  # the import system binds a submodule once it has run: the name exists
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: Mapping[str, tuple[str, ...]]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`; `exports` maps each submodule (".catalog") to the
    names the package takes from it."""
    where = {name: module for module, names in exports.items() for name in names}
    module = sys.modules[package]  # the package is being imported: it is in sys.modules already
    namespace = module.__dict__
    namesakes = frozenset(name for name, source in where.items() if source == f".{name}")
    if namesakes:
        module.__class__ = _NamesakePackage
        namespace["_namesakes"] = namesakes

    def __getattr__(name: str) -> Any:
        if name in where:
            value = getattr(importlib.import_module(where[name], package), name)
        else:
            try:  # a submodule not imported yet (`handlers.backup.storage`): what `import` would give
                value = importlib.import_module(f".{name}", package)
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
