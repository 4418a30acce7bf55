"""
Tests for L{squeak.proxy.logtag}: the access log's result code named from
an exchange's outcome, as a table.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from squeak.net.intercept import SpliceOutcome
from squeak.proxy.logtag import Answer, LogTag, Outcome, hierarchy_note, log_tag
from squeak.proxy.splice import splice_answer

#: (why, outcome, tag)
CASES = [
    ("nothing answered", Outcome(), LogTag.NONE),
    ("a malformed request's 400 page", Outcome(error_status=400), LogTag.TAG_NONE),
    ("a request too large: 413", Outcome(error_status=413), LogTag.TAG_NONE),
    ("a method not implemented: 501", Outcome(error_status=501), LogTag.TAG_NONE),
    ("a loop (508) before anything was chosen", Outcome(error_status=508), LogTag.NONE),
    ("only-if-cached's 504", Outcome(error_status=504), LogTag.NONE),
    ("the client left while access was decided", Outcome(client_left=True), LogTag.NONE),
    ("a miss", Outcome(Answer.ORIGIN), LogTag.TCP_MISS),
    ("an origin failure page is still a miss", Outcome(Answer.ORIGIN, error_status=502),
     LogTag.TCP_MISS),
    ("a miss whose client left", Outcome(Answer.ORIGIN, client_left=True),
     LogTag.TCP_MISS_ABORTED),
    ("a miss whose origin body was cut short", Outcome(Answer.ORIGIN, body_cut=True),
     LogTag.TCP_MISS_ABORTED),
    ("a replaced entry whose body was cut short", Outcome(Answer.REPLACED, body_cut=True),
     LogTag.TCP_MISS_ABORTED),
    ("a replaced entry whose client left keeps its code",
     Outcome(Answer.REPLACED, client_left=True), LogTag.TCP_REFRESH_MODIFIED),
    ("a memory hit", Outcome(Answer.MEMORY), LogTag.TCP_MEM_HIT),
    ("a disk hit", Outcome(Answer.DISK), LogTag.TCP_HIT),
    ("a memory hit answering the client's conditional with 304",
     Outcome(Answer.MEMORY, client_conditional_met=True), LogTag.TCP_IMS_HIT),
    ("a disk hit answering the client's conditional with 304",
     Outcome(Answer.DISK, client_conditional_met=True), LogTag.TCP_IMS_HIT),
    ("RFC 9111 §4.3.4: validated, unmodified", Outcome(Answer.VALIDATED),
     LogTag.TCP_REFRESH_UNMODIFIED),
    ("validated, and the client's conditional met: still a refresh",
     Outcome(Answer.VALIDATED, client_conditional_met=True), LogTag.TCP_REFRESH_UNMODIFIED),
    ("RFC 9111 §4.3.3: validated, replaced", Outcome(Answer.REPLACED),
     LogTag.TCP_REFRESH_MODIFIED),
    ("RFC 5861 §4: stale-if-error", Outcome(Answer.STALE_ON_ERROR),
     LogTag.TCP_REFRESH_FAIL_OLD),
    ("stale-if-error with the client's conditional met",
     Outcome(Answer.STALE_ON_ERROR, client_conditional_met=True),
     LogTag.TCP_REFRESH_FAIL_OLD),
    ("RFC 9111 §4.2.4: validation failed, stale forbidden: the error",
     Outcome(Answer.REFRESH_FAILED, error_status=502), LogTag.TCP_REFRESH_FAIL_ERR),
    ("RFC 9111 §4.3.3: validation answered 5xx, relayed",
     Outcome(Answer.REFRESH_FAILED), LogTag.TCP_REFRESH_FAIL_ERR),
    ("refused by the rules", Outcome(Answer.DENIED, error_status=403), LogTag.TCP_DENIED),
    ("refused with the client gone", Outcome(Answer.DENIED, client_left=True),
     LogTag.TCP_DENIED),
    ("a CONNECT tunnel", Outcome(Answer.TUNNEL), LogTag.TCP_TUNNEL),
]  # fmt: skip


class LogTagTests(SynchronousTestCase):
    """
    L{log_tag} names each outcome as Squid does.
    """

    def test_table(self) -> None:
        """
        Each row's outcome gets its code.
        """
        wrong = [(why, got) for why, outcome, tag in CASES if (got := log_tag(outcome)) != tag]
        self.assertEqual(wrong, [])

    def test_written_as_squid_spells_it(self) -> None:
        """
        A code is a string equal to Squid's name, so a log line holds the
        same text as before.
        """
        self.assertEqual(f"{LogTag.TCP_MEM_HIT}", "TCP_MEM_HIT")
        self.assertEqual("x " + LogTag.TCP_MISS, "x TCP_MISS")
        self.assertEqual([tag.value for tag in LogTag], [tag.name for tag in LogTag])


#: (code, what Squid logs after a fetch noted HIER_DIRECT/192.0.2.7), from
#: Squid's FwdState::syncHierNote and tunnel.cc: only a connection to a
#: server sets the note; hits and refusals never make one.
HIERARCHY = {
    LogTag.NONE: ("HIER_NONE", "-"),
    LogTag.TAG_NONE: ("HIER_NONE", "-"),
    LogTag.TCP_MISS: ("HIER_DIRECT", "192.0.2.7"),
    LogTag.TCP_MISS_ABORTED: ("HIER_DIRECT", "192.0.2.7"),
    LogTag.TCP_HIT: ("HIER_NONE", "-"),
    LogTag.TCP_MEM_HIT: ("HIER_NONE", "-"),
    LogTag.TCP_IMS_HIT: ("HIER_NONE", "-"),
    LogTag.TCP_REFRESH_UNMODIFIED: ("HIER_DIRECT", "192.0.2.7"),
    LogTag.TCP_REFRESH_MODIFIED: ("HIER_DIRECT", "192.0.2.7"),
    LogTag.TCP_REFRESH_FAIL_OLD: ("HIER_DIRECT", "192.0.2.7"),
    LogTag.TCP_REFRESH_FAIL_ERR: ("HIER_DIRECT", "192.0.2.7"),
    LogTag.TCP_DENIED: ("HIER_NONE", "-"),
    LogTag.TCP_TUNNEL: ("HIER_DIRECT", "192.0.2.7"),
}


class HierarchyTests(SynchronousTestCase):
    """
    L{hierarchy_note} gives each code the hierarchy code Squid gives it.
    """

    def test_every_code_after_a_fetch(self) -> None:
        """
        Each code's note after a fetch noted C{HIER_DIRECT/192.0.2.7} is
        the table's, and the table names every code.
        """
        self.assertEqual(set(HIERARCHY), set(LogTag))
        wrong = [
            (tag, got)
            for tag, want in HIERARCHY.items()
            if (got := hierarchy_note(tag, "HIER_DIRECT", "192.0.2.7")) != want
        ]
        self.assertEqual(wrong, [])

    def test_nothing_tried_stays_none(self) -> None:
        """
        A code that goes upstream but made no connection (a name that did
        not resolve, PURGE answered by the proxy) keeps C{HIER_NONE/-}.
        """
        notes = {hierarchy_note(tag, "HIER_NONE", "-") for tag in LogTag}
        self.assertEqual(notes, {("HIER_NONE", "-")})

    def test_intercepted_splice_keeps_original_dst(self) -> None:
        """
        A spliced intercepted connection keeps Squid's C{ORIGINAL_DST}.
        """
        self.assertEqual(
            hierarchy_note(LogTag.TCP_TUNNEL, "ORIGINAL_DST", "192.0.2.7"),
            ("ORIGINAL_DST", "192.0.2.7"),
        )


class SpliceTagTests(SynchronousTestCase):
    """
    Spliced TLS connections are named in the same vocabulary.
    """

    def test_every_splice_outcome(self) -> None:
        """
        Relayed (also until the idle timeout) is TCP_TUNNEL, refused
        TCP_DENIED, anything else NONE.
        """
        tags = {outcome: log_tag(Outcome(splice_answer(outcome))) for outcome in SpliceOutcome}
        self.assertEqual(tags[SpliceOutcome.SPLICED], LogTag.TCP_TUNNEL)
        self.assertEqual(tags[SpliceOutcome.IDLE_TIMEOUT], LogTag.TCP_TUNNEL)
        self.assertEqual(tags[SpliceOutcome.DENIED], LogTag.TCP_DENIED)
        others = {
            tag for outcome, tag in tags.items()
            if outcome not in (SpliceOutcome.SPLICED, SpliceOutcome.IDLE_TIMEOUT,
                               SpliceOutcome.DENIED)
        }  # fmt: skip
        self.assertEqual(others, {LogTag.NONE})


class DocumentedCodesTests(SynchronousTestCase):
    """
    docs/operations.md lists every code squeak writes, and no other.
    """

    def test_operations_table_matches_the_enum(self) -> None:
        """
        The "Result codes" table has one row per L{LogTag} member, in the
        enum's spelling, each with a Squid equivalent, a meaning and a
        hierarchy code.
        """
        doc = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
        text = doc.read_text(encoding="utf-8")
        section = text.split("### Result codes", 1)[1].split("\n#", 1)[0]
        rows = [line for line in section.splitlines() if re.match(r"\| `[A-Z_]+` \|", line)]
        codes = [re.match(r"\| `([A-Z_]+)` \|", row).group(1) for row in rows]  # type: ignore[union-attr]
        self.assertEqual(sorted(codes), sorted(tag.value for tag in LogTag))
        cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
        self.assertEqual([code for code, *rest in cells if len(rest) != 3 or "" in rest], [])
