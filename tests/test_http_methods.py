"""
Tests for L{squeak.http.methods}: which methods are safe, which invalidate
the cache, and which carry Max-Forwards, as tables citing their sections.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from squeak.http.methods import invalidates_cache, is_safe, uses_max_forwards

#: (why, method, safe, invalidates, uses Max-Forwards)
CASES = [
    ("RFC 9110 §9.3.1: GET is safe", b"GET", True, False, False),
    ("RFC 9110 §9.3.2: HEAD is safe", b"HEAD", True, False, False),
    ("RFC 9110 §9.3.7: OPTIONS is safe; §7.6.2 Max-Forwards", b"OPTIONS", True, False, True),
    ("RFC 9110 §9.3.8: TRACE is safe; §7.6.2 Max-Forwards", b"TRACE", True, False, True),
    ("RFC 9110 §9.3.3: POST is unsafe; RFC 9111 §4.4 invalidates", b"POST", False, True, False),
    ("RFC 9110 §9.3.4: PUT is unsafe", b"PUT", False, True, False),
    ("RFC 9110 §9.3.5: DELETE is unsafe", b"DELETE", False, True, False),
    ("RFC 5789: PATCH is unsafe", b"PATCH", False, True, False),
    ("RFC 9110 §9.3.6: CONNECT is not safe", b"CONNECT", False, True, False),
    ("an extension method is not known to be safe", b"PURGE", False, True, False),
    ("RFC 9110 §9.1: method names are case-sensitive", b"get", False, True, False),
    ("RFC 9110 §9.1: case-sensitive for Max-Forwards too", b"trace", False, True, False),
]


class MethodTests(SynchronousTestCase):
    """
    Each row's method decisions match the sections it cites.
    """

    def test_table(self) -> None:
        """
        L{is_safe}, L{invalidates_cache} and L{uses_max_forwards} agree with
        every row.
        """
        wrong = [
            (why, got, (safe, invalidates, forwards))
            for why, method, safe, invalidates, forwards in CASES
            if (got := (is_safe(method), invalidates_cache(method), uses_max_forwards(method)))
            != (safe, invalidates, forwards)
        ]
        self.assertEqual(wrong, [])
