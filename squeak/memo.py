"""
Remembering the results of pure functions of one short string.

The hot path parses the same few URIs and host names on every request (a
cache's hot objects, a LAN's favourite sites).  Parsing them once and
reusing the immutable result is a large share of the per-request saving
measured in docs/performance.md.  Only short arguments are remembered, so a
client sending huge unique URIs cannot make the memory grow beyond
C{maxsize * limit} bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sized
from typing import Protocol, TypeVar

__all__ = ["remember_short"]


class _ShortKey(Sized, Hashable, Protocol):
    """What can be remembered: a hashable value with a length."""


_Arg = TypeVar("_Arg", bound=_ShortKey)
_Result = TypeVar("_Result")


def remember_short(
    limit: int = 2048, maxsize: int = 4096
) -> Callable[[Callable[[_Arg], _Result]], Callable[[_Arg], _Result]]:
    """
    Decorate a pure function of one argument to remember, least recently
    used first out, its results for arguments no longer than C{limit}.
    Exceptions are not remembered.
    """

    def decorate(function: Callable[[_Arg], _Result]) -> Callable[[_Arg], _Result]:
        remembered = functools.lru_cache(maxsize=maxsize)(function)

        @functools.wraps(function)
        def call(argument: _Arg) -> _Result:
            if len(argument) <= limit:
                return remembered(argument)
            return function(argument)

        call.cache_clear = remembered.cache_clear  # type: ignore[attr-defined]
        return call

    return decorate
