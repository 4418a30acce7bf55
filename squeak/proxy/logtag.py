# -*- test-case-name: tests.test_proxy_logtag -*-
"""
Squid's result codes (the access log's C{TCP_MISS}, C{TCP_MEM_HIT} ...) as
one vocabulary, and the pure function that names an exchange's outcome with
one of them.

Squid keeps these in one enum too (C{src/LogTags.h}); squeak used to set
strings along a request's path, so the code a line carried depended on the
order of assignments.  Here an exchange records what happened (L{Answer},
and a few facts beside it) and L{log_tag} names it once, when the line is
written.

This module is pure: no Twisted, no clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "LOCAL_TAGS",
    "Answer",
    "LogTag",
    "Outcome",
    "OutcomeFacts",
    "hierarchy_note",
    "log_tag",
]


class LogTag(enum.StrEnum):
    """
    The result codes squeak writes, spelled as Squid spells them (a
    L{str}, so a member is written as its value).
    """

    NONE = "NONE"
    """Nothing was answered (the client left while access was decided)."""
    TAG_NONE = "TAG_NONE"
    """The request was refused before any cache or origin work (400, 413, 501)."""
    TCP_MISS = "TCP_MISS"
    """Answered by the origin (or by the proxy itself on its behalf)."""
    TCP_MISS_ABORTED = "TCP_MISS_ABORTED"
    """An origin answer cut short: the origin's body or the client went away."""
    TCP_HIT = "TCP_HIT"
    """Served from the disk tier without contacting the origin."""
    TCP_MEM_HIT = "TCP_MEM_HIT"
    """Served from the memory tier without contacting the origin."""
    TCP_IMS_HIT = "TCP_IMS_HIT"
    """A client's conditional request answered 304 from a fresh entry."""
    TCP_REFRESH_UNMODIFIED = "TCP_REFRESH_UNMODIFIED"
    """Validated with the origin (RFC 9111 §4.3): still good, served."""
    TCP_REFRESH_MODIFIED = "TCP_REFRESH_MODIFIED"
    """Validated with the origin: replaced by its new answer."""
    TCP_REFRESH_FAIL_OLD = "TCP_REFRESH_FAIL_OLD"
    """
    Validation failed (no answer, or a 5xx); the stale entry was served
    (RFC 9111 §4.2.4, RFC 5861 stale-if-error).
    """
    TCP_REFRESH_FAIL_ERR = "TCP_REFRESH_FAIL_ERR"
    """
    Validation failed and the stale entry could not be served (it or the
    request forbids it): the error was answered (Squid's name, C{LogTags.h}:
    "refresh from origin failed, error forwarded").
    """
    TCP_DENIED = "TCP_DENIED"
    """Refused by the access rules (403, 407) or by PURGE's address check."""
    TCP_TUNNEL = "TCP_TUNNEL"
    """A CONNECT tunnel (or spliced TLS) relayed bytes both ways."""


class Answer(enum.Enum):
    """
    Where an exchange's answer came from, as far as it got.
    """

    NOTHING = "nothing"
    """No answer was chosen (refused early, or the client left first)."""
    ORIGIN = "origin"
    """Forwarded: the origin's answer or failure, an upgrade, a local answer."""
    MEMORY = "memory"
    """A fresh (or servable stale) entry from the memory tier."""
    DISK = "disk"
    """A fresh (or servable stale) entry from the disk tier."""
    VALIDATED = "validated"
    """A stored entry the origin confirmed (304) and which was served."""
    REPLACED = "replaced"
    """A stored entry the origin replaced with a new answer."""
    STALE_ON_ERROR = "stale_on_error"
    """A stale entry served because the origin failed."""
    REFRESH_FAILED = "refresh_failed"
    """A validation failed and its error (a page or a 5xx) was answered."""
    DENIED = "denied"
    """Refused by the rules, at admission or when connecting."""
    TUNNEL = "tunnel"
    """A CONNECT tunnel."""


class OutcomeFacts(Protocol):
    """
    What L{log_tag} reads.  An exchange provides these as attributes itself
    (no record is built per request); L{Outcome} is the same as a value.
    """

    @property
    def answer(self) -> Answer: ...

    @property
    def client_conditional_met(self) -> bool:
        """A client's If-None-Match/If-Modified-Since was answered 304."""

    @property
    def body_cut(self) -> bool:
        """The origin's body ended before it was complete."""

    @property
    def client_left(self) -> bool:
        """The client went away before the response finished."""

    @property
    def error_status(self) -> int:
        """The status of the error page sent, or 0."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """
    An exchange's outcome as a value (see L{OutcomeFacts}): for the
    answers not tied to an exchange (a refused request head, a spliced
    connection) and for tests.
    """

    answer: Answer = Answer.NOTHING
    client_conditional_met: bool = False
    body_cut: bool = False
    client_left: bool = False
    error_status: int = 0


#: The code of each answer before the facts beside it are considered.
_BY_ANSWER = {
    Answer.NOTHING: LogTag.NONE,
    Answer.ORIGIN: LogTag.TCP_MISS,
    Answer.MEMORY: LogTag.TCP_MEM_HIT,
    Answer.DISK: LogTag.TCP_HIT,
    Answer.VALIDATED: LogTag.TCP_REFRESH_UNMODIFIED,
    Answer.REPLACED: LogTag.TCP_REFRESH_MODIFIED,
    Answer.STALE_ON_ERROR: LogTag.TCP_REFRESH_FAIL_OLD,
    Answer.REFRESH_FAILED: LogTag.TCP_REFRESH_FAIL_ERR,
    Answer.DENIED: LogTag.TCP_DENIED,
    Answer.TUNNEL: LogTag.TCP_TUNNEL,
}

#: Error statuses that mean the request itself was refused (malformed, too
#: large, not implemented): Squid logs these C{TAG_NONE}.
_REFUSED_REQUEST_STATUSES = frozenset({400, 413, 501})


def log_tag(outcome: OutcomeFacts) -> LogTag:
    """
    Squid's result code for an exchange's outcome.

      - an origin body cut short is C{TCP_MISS_ABORTED}, whatever was
        forwarded (a miss or a replaced entry);
      - a plain miss whose client left first is C{TCP_MISS_ABORTED} too;
      - a fresh hit answered 304 to the client's own conditional is
        C{TCP_IMS_HIT} (Squid's name);
      - nothing chosen but an error page for a refused request (400, 413,
        501) is C{TAG_NONE};
      - otherwise the answer's own code.
    """
    if outcome.body_cut:
        return LogTag.TCP_MISS_ABORTED
    answer = outcome.answer
    if answer is Answer.ORIGIN:
        return LogTag.TCP_MISS_ABORTED if outcome.client_left else LogTag.TCP_MISS
    if answer is Answer.NOTHING:
        if outcome.error_status in _REFUSED_REQUEST_STATUSES:
            return LogTag.TAG_NONE
        return LogTag.NONE
    if outcome.client_conditional_met and answer in (Answer.MEMORY, Answer.DISK):
        return LogTag.TCP_IMS_HIT
    return _BY_ANSWER[answer]


#: The codes whose answer never came from a server: a hit, a refusal,
#: nothing answered.  Squid logs them C{HIER_NONE/-} (its hierarchy note is
#: set only by a connection to a server, C{FwdState::syncHierNote}, or to a
#: tunnel's, C{tunnel.cc}); every other code went upstream or tried to.
LOCAL_TAGS = frozenset(
    {
        LogTag.NONE,
        LogTag.TAG_NONE,
        LogTag.TCP_HIT,
        LogTag.TCP_MEM_HIT,
        LogTag.TCP_IMS_HIT,
        LogTag.TCP_DENIED,
    }
)


def hierarchy_note(tag: LogTag, hierarchy: str, peer: str) -> tuple[str, str]:
    """
    The hierarchy code and server address an access-log line carries
    (Squid's C{%Sh/%<a}), given the line's code and what the exchange
    noted while it went upstream.

    An answer that did not come from a server is C{HIER_NONE/-}, whatever
    happened before it (a hit served after a collapsed wait, a refusal at
    connection time); an answer that went to the origin keeps the note its
    fetch made: C{HIER_DIRECT/ADDR} for a miss, a refresh of any kind
    (C{TCP_REFRESH_UNMODIFIED} too: the origin answered the validation) and
    a tunnel, or C{HIER_NONE/-} when no connection was tried (a name that
    does not resolve, a local answer such as PURGE).

    @param hierarchy: The code the exchange noted (C{HIER_DIRECT},
        C{ORIGINAL_DST} or C{HIER_NONE}).
    @param peer: The address (or, before a connection, the host name) it
        noted, or C{-}.
    """
    if tag in LOCAL_TAGS:
        return "HIER_NONE", "-"
    return hierarchy, peer
