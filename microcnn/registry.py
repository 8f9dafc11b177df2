"""Name -> builder registries.

A string selects a builder; an unknown name raises ``ValueError`` with a "did you mean" hint and the list of
what exists. Registering the same name twice is an error (it would silently shadow a builder).

Example:
    >>> from microcnn.registry import Registry
    >>> ACTIVATIONS = Registry("activation")
    >>> @ACTIVATIONS.register("identity")
    ... def identity(x):
    ...     return x
    >>> ACTIVATIONS.get("identity")(3)
    3
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T", bound=Callable[..., Any])


def suggest(name: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest of ``choices``, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(name), sorted(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name_error(kind: str, name: str, choices: list[str] | tuple[str, ...] | set[str]) -> ValueError:
    """The one error message for an unknown choice: what came, the closest match, what exists."""
    available = ", ".join(sorted(choices))
    return ValueError(f"Unknown {kind} '{name}'.{suggest(name, choices)} Available: {available}.")


def check_choice(kind: str, value: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """Return ``value`` when it is one of ``choices``; otherwise raise the "did you mean" error."""
    if value not in choices:
        raise unknown_name_error(kind, value, choices)
    return value


class Registry:
    """A mapping of names to builders (classes or functions), filled with the :meth:`register` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            key = name or obj.__name__
            if key in self._items:
                raise ValueError(f"{self.kind} '{key}' is already registered; pick another name.")
            self._items[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._items:
            raise unknown_name_error(self.kind, name, list(self._items))
        return self._items[name]

    def build(self, name: str, /, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
