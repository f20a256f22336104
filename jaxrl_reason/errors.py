"""Errors a user causes and fixes, and the checks that raise them where configs are built.

A job ends a `UserError` with one `error:` line (jaxrl_reason.cli), never a traceback. Config
values are checked when the config object or the configurable is built, so a bad binding fails
at once and names itself, not deep inside a training loop.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar


class UserError(Exception):
    """An error the user fixes by changing a flag, a binding or a path."""


class ConfigError(UserError, ValueError):
    """A config value of the wrong type or out of range; the message names the binding."""


def require(ok: bool, binding: str, value: Any, must: str) -> None:
    """Raises `ConfigError("<binding>=<value> <must>")` unless `ok`."""
    if not ok:
        raise ConfigError(f"{binding}={value!r} {must}")


def _matches(value: Any, hint: Any) -> bool | None:
    """Whether `value` fits a simple type hint; None when the hint is not a simple one."""
    if hint is Any:
        return None
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_matches(value, h) for h in typing.get_args(hint)]
        return None if None in verdicts else any(verdicts)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if getattr(hint, "_is_runtime_protocol", False):  # a task capability: data.tasks.LengthTask
        return isinstance(value, hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple | list):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            verdicts = [_matches(v, args[0]) for v in value]
        elif len(args) == len(value):
            verdicts = [_matches(v, h) for v, h in zip(value, args, strict=True)]
        else:
            return False
        return None if None in verdicts else all(verdicts)
    return None


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_types(owner: str, values: dict[str, Any], hints: dict[str, Any]) -> None:
    """Checks each value whose hint is simple (int, float, bool, str, Literal choices, tuples,
    unions of those, runtime-checkable protocols); other hints (classes) are left to the code
    that uses them."""
    for name, value in values.items():
        hint = hints.get(name)
        if hint is not None and _matches(value, hint) is False:
            got = "" if typing.get_origin(hint) is typing.Literal else \
                f" (got {type(value).__name__})"
            raise ConfigError(f"{owner}.{name}={value!r} must be {_describe(hint)}{got}")


F = TypeVar("F", bound=Callable[..., Any])


def typed(fn: F) -> F:
    """Checks a configurable's arguments against its annotations on every call.

    Apply it below `@gin.configurable`, so gin's bindings are what gets checked."""
    signature = inspect.signature(fn)
    owner = fn.__qualname__.removesuffix(".__init__")  # a class's __init__: the class name

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        hints = typing.get_type_hints(fn)
        bound = signature.bind_partial(*args, **kwargs)
        check_types(owner, {k: v for k, v in bound.arguments.items() if k != "self"}, hints)
        return fn(*args, **kwargs)

    wrapper.__signature__ = signature  # what gin inspects (its gin.REQUIRED checks included)
    return wrapper  # type: ignore[return-value]


def check_dataclass(obj: Any) -> None:
    """`check_types` over a dataclass's fields (call it from `__post_init__`)."""
    hints = typing.get_type_hints(type(obj))
    values = {f: getattr(obj, f) for f in obj.__dataclass_fields__}
    check_types(type(obj).__name__, values, hints)
