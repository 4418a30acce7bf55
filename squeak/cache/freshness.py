# -*- test-case-name: tests.test_cache_policy -*-
"""
How long a stored response stays fresh and how old it is (RFC 9111
§4.2.1-§4.2.3): the freshness lifetime from the response's directives, or
heuristically from Squid-style C{refresh_pattern} rules; the current age
from C{Date}, C{Age} and the times it was requested and received; and the
C{Age} value sent with it.

Pure: no Twisted, no clock (callers pass the times).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from squeak.cache.directives import DELTA_SECONDS_MAX, CacheControl, MessageDates

if TYPE_CHECKING:
    from squeak.config import CacheConfig

__all__ = [
    "DEFAULT_RULES",
    "HEURISTICALLY_CACHEABLE",
    "Freshness",
    "FreshnessRules",
    "RefreshRule",
    "age_header_value",
    "current_age",
    "freshness_lifetime",
]

HEURISTICALLY_CACHEABLE: frozenset[int] = frozenset(
    {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}
)
"""
Status codes cacheable by default (RFC 9110 §15.1), less 206: squeak does
not store partial content.
"""


# Not frozen: built on every request, and a frozen dataclass costs about
# 3 us more to build (docs/performance.md).  Treat it as immutable.
@dataclass(slots=True)
class Freshness:
    """
    A freshness lifetime (RFC 9111 §4.2.1).

    @ivar lifetime: Seconds, not negative.
    @ivar reason: Where it came from, citing the section.
    @ivar heuristic: Whether it was computed heuristically (§4.2.2).
    """

    lifetime: float
    reason: str
    heuristic: bool = False


# --- Freshness rules ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshRule:
    """
    A Squid-like C{refresh_pattern}: heuristic freshness for the URIs its
    pattern matches, used only where a response has no explicit freshness.

    With C{Last-Modified}, the lifetime is C{percent}% of the time between
    it and C{Date}, kept between C{min} and C{max}; without, C{min}.

    @ivar pattern: Searched for in the URI (first matching rule wins).
    @ivar min: Seconds.
    @ivar percent: Per cent of the time since last modification.
    @ivar max: Seconds.
    """

    pattern: re.Pattern[str]
    min: float
    percent: float
    max: float


@dataclass(frozen=True, slots=True)
class FreshnessRules:
    """
    The configurable part of heuristic freshness (RFC 9111 §4.2.2).

    @ivar heuristic_fraction: The fraction of the time since C{Last-Modified}
        used as lifetime (RFC 9111 §4.2.2 suggests "no more than some
        fraction of the interval since that time. A typical setting of this
        fraction might be 10%").
    @ivar heuristic_max: The cap on a heuristic lifetime, in seconds.
    @ivar refresh_rules: Rules tried first, in order.
    """

    heuristic_fraction: float = 0.1
    heuristic_max: float = 86400.0
    refresh_rules: tuple[RefreshRule, ...] = ()

    @classmethod
    def from_config(cls, cache: CacheConfig) -> FreshnessRules:
        """
        Build the rules from the C{[cache]} configuration table.

        @param cache: The parsed C{[cache]} table.
        """
        rules = tuple(
            RefreshRule(
                re.compile(p.regex, re.IGNORECASE if p.case_insensitive else 0),
                p.min,
                p.percent,
                p.max,
            )
            for p in cache.refresh_pattern
        )
        return cls(cache.heuristic_fraction, cache.heuristic_max, rules)


DEFAULT_RULES = FreshnessRules()
"""Heuristic freshness with the defaults: 10% of the age, at most one day."""


# --- Freshness and age -------------------------------------------------------------------


def freshness_lifetime(
    cc: CacheControl,
    dates: MessageDates,
    status: int,
    *,
    response_time: float,
    uri: str = "",
    shared: bool = True,
    rules: FreshnessRules = DEFAULT_RULES,
) -> Freshness:
    """
    The freshness lifetime of a response (RFC 9111 §4.2.1).

    The first of: C{s-maxage} (shared caches, §5.2.2.10), C{max-age}
    (§5.2.2.1), C{Expires} minus C{Date} (§5.3; an invalid C{Expires} means
    already expired), and otherwise a heuristic (§4.2.2) - only for
    heuristically cacheable statuses or C{public} responses, from the first
    matching refresh rule, else a fraction of the time since
    C{Last-Modified}, capped.

    @param cc: The response's C{Cache-Control}.
    @param dates: The response's dates.
    @param status: The response status code.
    @param response_time: When the response was received, standing in for a
        missing C{Date} (RFC 9110 §6.6.1).
    @param uri: The target URI, for refresh rules.
    @param shared: Whether the cache is shared.
    @param rules: The heuristic settings.
    """
    if shared and cc.s_maxage is not None:
        bad = " (invalid or conflicting, read as 0, §4.2.1)" if "s-maxage" in cc.invalid else ""
        return Freshness(float(cc.s_maxage), f"RFC 9111 §5.2.2.10: s-maxage{bad}")
    if cc.max_age is not None:
        bad = " (invalid or conflicting, read as 0, §4.2.1)" if "max-age" in cc.invalid else ""
        return Freshness(float(cc.max_age), f"RFC 9111 §5.2.2.1: max-age{bad}")
    if dates.expires_invalid:
        return Freshness(0.0, "RFC 9111 §5.3: invalid Expires means already expired")
    date = dates.date if dates.date is not None else response_time
    if dates.expires is not None:
        return Freshness(max(0.0, dates.expires - date), "RFC 9111 §4.2.1: Expires minus Date")
    if status not in HEURISTICALLY_CACHEABLE and not cc.public:
        return Freshness(
            0.0, f"RFC 9111 §4.2.2: no explicit freshness and {status} is not heuristic"
        )
    since = None if dates.last_modified is None else max(0.0, date - dates.last_modified)
    for rule in rules.refresh_rules:
        if rule.pattern.search(uri):
            if since is None:
                return Freshness(
                    rule.min,
                    f"RFC 9111 §4.2.2: refresh_pattern {rule.pattern.pattern!r} min",
                    heuristic=True,
                )
            lifetime = min(max(since * rule.percent / 100.0, rule.min), rule.max)
            return Freshness(
                lifetime,
                f"RFC 9111 §4.2.2: refresh_pattern {rule.pattern.pattern!r} "
                f"{rule.percent:g}% of the time since Last-Modified",
                heuristic=True,
            )
    if since is None:
        return Freshness(0.0, "RFC 9111 §4.2.2: no explicit freshness and no Last-Modified")
    lifetime = min(since * rules.heuristic_fraction, rules.heuristic_max)
    return Freshness(
        lifetime,
        f"RFC 9111 §4.2.2: {rules.heuristic_fraction:.0%} of the time since Last-Modified",
        heuristic=True,
    )


def current_age(
    dates: MessageDates, *, request_time: float, response_time: float, now: float
) -> float:
    """
    The current age of a stored response (RFC 9111 §4.2.3)::

        apparent_age = max(0, response_time - date_value)
        response_delay = response_time - request_time
        corrected_age_value = age_value + response_delay
        corrected_initial_age = max(apparent_age, corrected_age_value)
        resident_time = now - response_time
        current_age = corrected_initial_age + resident_time

    A missing C{Date} counts as C{response_time}, a missing C{Age} as 0.

    @return: Seconds, not negative.
    """
    date_value = dates.date if dates.date is not None else response_time
    apparent_age = max(0.0, response_time - date_value)
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = (dates.age or 0) + response_delay
    corrected_initial_age = max(apparent_age, corrected_age_value)
    resident_time = max(0.0, now - response_time)
    return corrected_initial_age + resident_time


#: The largest C{Age} value sent (RFC 9111 §1.2.2).
_AGE_CAP = str(DELTA_SECONDS_MAX).encode("ascii")


def age_header_value(age: float) -> bytes:
    """
    The C{Age} field value for a current age (RFC 9111 §5.1): whole seconds,
    capped at 2^31 (§1.2.2).

    Every hit sends one, so the common case is one comparison and one
    C{%d} formatting (which truncates as C{int} does), about half the cost
    of C{str(int(age)).encode()}.
    """
    if 0.0 <= age < DELTA_SECONDS_MAX:
        return b"%d" % age
    if age < 0.0 and math.isfinite(age):
        return b"0"
    return _AGE_CAP  # infinite, not a number, or too large
