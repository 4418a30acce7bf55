# -*- test-case-name: tests.test_cache_policy -*-
"""
RFC 9111 §4.3 and §4.4 for a shared cache, as pure functions: validating a
stored response with its origin (the validators to send, what the answer
means, freshening with a 304), answering a client's own conditional request
from a stored response, and what an unsafe request invalidates.

Each decision carries a reason citing the section it follows.  This module
is pure: it imports neither Twisted nor diskcache and never reads the clock.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin

from squeak.cache.directives import field_values, parse_dates, parse_http_date, split_list
from squeak.cache.keys import normalise_uri
from squeak.cache.policy import StoredResponse
from squeak.cache.storing import UNSTORED_FIELDS
from squeak.http.fields import HOP_BY_HOP, RawHeaders, connection_options
from squeak.http.methods import SAFE_METHODS

__all__ = [
    "Validation",
    "ValidationDecision",
    "answer_client_conditional",
    "conditional_request_headers",
    "freshen",
    "freshen_stored",
    "handle_validation_response",
    "invalidation_targets",
    "not_modified_headers",
    "selects_for_update",
    "validation_request_headers",
]


class Validation(enum.Enum):
    """What to do with the origin's answer to a validation (RFC 9111 §4.3.3)."""

    FRESHEN = "freshen"
    """A 304 that selects the stored response: freshen it and serve it."""
    REPLACE = "replace"
    """A full response: forward it and store it in place of the old one."""
    RETRY = "retry"
    """A 304 that selects nothing stored: repeat the request unconditionally."""
    SERVE_STALE = "serve_stale"
    """A 5xx while serving it stale is allowed: serve the stored response."""


@dataclass(frozen=True, slots=True)
class ValidationDecision:
    """
    The outcome of a validation.

    @ivar kind: What to do.
    @ivar reason: Why, citing the section.
    """

    kind: Validation
    reason: str


# --- Validation --------------------------------------------------------------------------


def conditional_request_headers(stored_headers: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """
    The validators to send when validating a stored response (RFC 9111
    §4.3.1): C{If-None-Match} with its C{ETag}, and C{If-Modified-Since} with
    its C{Last-Modified}.

    @return: Zero, one or two fields.
    """
    stored_headers = list(stored_headers)
    headers: RawHeaders = []
    etags = field_values(stored_headers, b"etag")
    if etags:
        headers.append((b"If-None-Match", etags[0]))
    modified = field_values(stored_headers, b"last-modified")
    if modified and parse_http_date(modified[0]) is not None:
        headers.append((b"If-Modified-Since", modified[0]))
    return headers


def validation_request_headers(
    request_headers: Iterable[tuple[bytes, bytes]],
    stored_headers: Iterable[tuple[bytes, bytes]],
) -> RawHeaders:
    """
    The header fields of a request validating a stored response on behalf of
    a client: the client's fields without its own C{If-None-Match} and
    C{If-Modified-Since}, plus the stored response's validators (RFC 9111
    §4.3.1). The client's own conditional is then answered from the
    validated response with L{answer_client_conditional} (§4.3.2).
    """
    kept = [
        (n, v)
        for n, v in request_headers
        if n.lower() not in (b"if-none-match", b"if-modified-since")
    ]
    return kept + conditional_request_headers(stored_headers)


def _entity_tags(values: Iterable[bytes]) -> list[tuple[bool, bytes]]:
    """Parse entity-tags (RFC 9110 §8.8.3) as C{(weak, opaque-tag)} pairs."""
    tags = []
    for element in split_list(values):
        weak = element[:2] in (b"W/", b"w/")
        opaque = element[2:] if weak else element
        if len(opaque) >= 2 and opaque[:1] == b'"' and opaque[-1:] == b'"':
            tags.append((weak, opaque))
    return tags


def selects_for_update(
    stored_headers: Iterable[tuple[bytes, bytes]], new_headers: Iterable[tuple[bytes, bytes]]
) -> bool:
    """
    Whether a 304 (or HEAD) response selects a stored response for update
    (RFC 9111 §4.3.4), squeak keeping one stored response per key.

    A strong C{ETag} in the new response selects only a stored response with
    the same strong C{ETag}; otherwise a weak C{ETag} or a C{Last-Modified}
    must match the stored one. A new response with no validator at all
    selects the stored response it was a conditional answer about (§4.3.4
    selects it only when that one lacks validators too; squeak trusts the
    origin's 304 to its own conditional request).
    """
    stored_headers = list(stored_headers)
    new_headers = list(new_headers)
    stored_tags = _entity_tags(field_values(stored_headers, b"etag"))
    new_tags = _entity_tags(field_values(new_headers, b"etag"))
    new_modified = field_values(new_headers, b"last-modified")
    strong = [opaque for weak, opaque in new_tags if not weak]
    if strong:
        return any(not weak and opaque in strong for weak, opaque in stored_tags)
    if new_tags or new_modified:
        if any(opaque in {o for _, o in new_tags} for _, opaque in stored_tags):
            return True
        stored_modified = field_values(stored_headers, b"last-modified")
        new_date = parse_http_date(new_modified[0]) if new_modified else None
        return bool(
            stored_modified
            and new_date is not None
            and parse_http_date(stored_modified[0]) == new_date
        )
    return True


_NOT_UPDATED = frozenset({b"content-length"}) | HOP_BY_HOP
"""
Fields a 304 never updates (RFC 9111 §3.2): Content-Length, and the
connection-specific fields excepted from storage (§3.1).
"""


def freshen(
    stored_headers: Iterable[tuple[bytes, bytes]],
    response_304_headers: Iterable[tuple[bytes, bytes]],
) -> RawHeaders:
    """
    Update a stored response's header fields from a 304 (RFC 9111 §4.3.4,
    §3.2): each field in the 304 replaces every stored line of that name,
    except C{Content-Length}, the hop-by-hop fields and those the 304's
    C{Connection} names.

    C{Age} is always replaced, by the 304's or by none: the freshened
    response is aged from the validation's request and response times
    (L{freshen_stored}), so its C{age_value} (RFC 9111 §4.2.3) is the age
    the 304 reports, 0 when it reports none (the origin itself just
    vouched for the response).  Keeping the old C{Age} would count the
    first response's age again on top of the new times: a response that
    arrived with C{Age: 7200} and C{max-age=3600} would stay stale after
    every successful validation.

    C{Set-Cookie} in a 304 does not update the stored fields either: a
    cookie is for the one client whose request was validated, and squeak
    never stores one (L{squeak.cache.storing.UNSTORED_FIELDS}).

    @return: The stored fields not replaced, in order, then the new ones.
    """
    new = list(response_304_headers)
    excluded = _NOT_UPDATED | connection_options(new) | UNSTORED_FIELDS
    updates = [(n, v) for n, v in new if n.lower() not in excluded]
    replaced = {n.lower() for n, _ in updates} | {b"age"}
    kept = [(n, v) for n, v in stored_headers if n.lower() not in replaced]
    return kept + updates


def freshen_stored(
    stored: StoredResponse,
    response_304_headers: Iterable[tuple[bytes, bytes]],
    *,
    request_time: float,
    response_time: float,
) -> StoredResponse:
    """
    The stored response after a 304 freshened it (RFC 9111 §4.3.4): its
    headers updated by L{freshen}, and the request and response times of
    the validation, from which its age is now computed (§4.2.3).
    """
    return dataclasses.replace(
        stored,
        headers=tuple(freshen(stored.headers, response_304_headers)),
        request_time=request_time,
        response_time=response_time,
    )


def handle_validation_response(
    stored: StoredResponse,
    status: int,
    response_headers: Iterable[tuple[bytes, bytes]],
    *,
    serve_stale: bool = False,
) -> ValidationDecision:
    """
    What to do with the origin's answer to a conditional request (RFC 9111
    §4.3.3).

    A 304 that selects no stored response (another validator) is
    C{RETRY}: §4.3.4 has the cache repeat the request without its own
    validators, so that a client that asked no conditional question is
    never sent a 304.

    @param stored: The stored response being validated.
    @param status: The answer's status code.
    @param response_headers: The answer's header fields.
    @param serve_stale: Whether the stored response may be served if the
        validation fails (L{squeak.cache.policy.stale_on_failure}:
        C{stale-if-error}, or a disconnected cache's leave, §4.2.4).
    """
    if status == 304:
        if selects_for_update(stored.headers, response_headers):
            return ValidationDecision(
                Validation.FRESHEN,
                "RFC 9111 §4.3.3: 304 Not Modified freshens the stored response",
            )
        return ValidationDecision(
            Validation.RETRY,
            "RFC 9111 §4.3.4: the 304's validators select no stored response",
        )
    if 500 <= status <= 599 and serve_stale:
        return ValidationDecision(
            Validation.SERVE_STALE,
            "RFC 9111 §4.3.3: 5xx while validating, taken as no answer; the stored response "
            "may be served (§4.2.4, RFC 5861 §4)",
        )
    return ValidationDecision(
        Validation.REPLACE, "RFC 9111 §4.3.3: a full response replaces the stored one"
    )


def answer_client_conditional(
    request_headers: Iterable[tuple[bytes, bytes]],
    stored_headers: Iterable[tuple[bytes, bytes]],
    *,
    method: bytes = b"GET",
    status: int = 200,
) -> bool:
    """
    Whether a client's own conditional request is answered 304 from a
    stored response (RFC 9111 §4.3.2, RFC 9110 §13.1.1-§13.1.3).

    C{If-None-Match} uses the weak comparison (RFC 9110 §13.1.2) and
    C{*} matches any stored response; when it is present,
    C{If-Modified-Since} is ignored. C{If-Modified-Since} compares with the
    stored C{Last-Modified}, or C{Date} when there is none (RFC 9111
    §4.3.2). Preconditions apply only to GET and HEAD and to a 2xx response
    (RFC 9110 §13.2.1).

    @return: C{True} to answer 304 Not Modified.
    """
    if method.upper() not in (b"GET", b"HEAD") or not 200 <= status <= 299:
        return False
    request_headers = list(request_headers)
    stored_headers = list(stored_headers)
    if_none_match = field_values(request_headers, b"if-none-match")
    if if_none_match:
        if any(element == b"*" for element in split_list(if_none_match)):
            return True
        wanted = {opaque for _, opaque in _entity_tags(if_none_match)}
        stored = {opaque for _, opaque in _entity_tags(field_values(stored_headers, b"etag"))}
        return bool(wanted & stored)
    since_values = field_values(request_headers, b"if-modified-since")
    if not since_values:
        return False
    since = parse_http_date(since_values[0])
    if since is None:
        return False
    dates = parse_dates(stored_headers)
    modified = dates.last_modified if dates.last_modified is not None else dates.date
    return modified is not None and modified <= since


_NOT_MODIFIED_FIELDS = frozenset(
    {
        b"cache-control",
        b"content-location",
        b"date",
        b"etag",
        b"expires",
        b"vary",
        b"last-modified",
    }
)


def not_modified_headers(stored_headers: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """
    The header fields of a 304 generated from a stored response (RFC 9110
    §15.4.5: Cache-Control, Content-Location, Date, ETag, Expires and Vary,
    plus Last-Modified as a validator); the caller adds C{Age}.
    """
    return [(n, v) for n, v in stored_headers if n.lower() in _NOT_MODIFIED_FIELDS]


# --- Invalidation ------------------------------------------------------------------------


def _origin(uri: str) -> tuple[str, str] | None:
    """The C{(scheme, authority)} of a normalised absolute URI."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return None
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    return scheme, authority.rpartition("@")[2]


def invalidation_targets(
    method: bytes,
    status: int,
    request_uri: str,
    response_headers: Iterable[tuple[bytes, bytes]],
) -> list[str]:
    """
    The URIs whose stored responses an unsafe request invalidates (RFC 9111
    §4.4): the target URI, and the URIs in C{Location} and
    C{Content-Location} when they have the same origin, after a non-error
    (2xx or 3xx) response to a method that is not safe (RFC 9110 §9.2.1).

    @return: Normalised absolute URIs, without duplicates; empty if nothing
        is invalidated.
    """
    if method.upper() in SAFE_METHODS or not 200 <= status <= 399:
        return []
    target = normalise_uri(request_uri)
    targets = [target]
    origin = _origin(target)
    response_headers = list(response_headers)
    for name in (b"location", b"content-location"):
        for value in field_values(response_headers, name)[:1]:
            try:
                reference = value.decode("ascii")
                resolved = normalise_uri(urljoin(target, reference))
            except (UnicodeDecodeError, ValueError):
                continue
            if _origin(resolved) == origin and resolved not in targets:
                targets.append(resolved)
    return targets
