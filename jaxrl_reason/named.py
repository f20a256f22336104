"""Tables of functions by name (losses, estimators, aggregations, rewards), so that one config
string picks one and an unknown name is one clear error listing the known ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from jaxrl_reason.errors import UserError

T = TypeVar("T")


class Named(dict[str, T], Generic[T]):
    """A dict of name -> T filled by the `register` decorator."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def register(self, name: str) -> Callable[[T], T]:
        def wrap(fn: T) -> T:
            self[name] = fn
            return fn

        return wrap

    def pick(self, name: str) -> T:
        if name not in self:
            raise UserError(f"unknown {self.what} {name!r}: one of {sorted(self)}")
        return self[name]
