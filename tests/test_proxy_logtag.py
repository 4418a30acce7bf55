"""
Tests for L{squeak.proxy.logtag}: the access log's result code named from
an exchange's outcome, as a table.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from squeak.net.intercept import SpliceOutcome
from squeak.proxy.logtag import Answer, LogTag, Outcome, log_tag
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
