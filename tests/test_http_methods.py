"""
Tests for L{squeak.http.methods}: which methods are safe, which invalidate
the cache, and which carry Max-Forwards, as tables citing their sections.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from squeak.http.methods import invalidates_cache, is_safe, uses_max_forwards, why_miscased

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


#: (why, method, refused)
MISCASED = [
    ("the registered spelling", b"DELETE", False),
    ("the registered spelling", b"GET", False),
    ("a registered WebDAV method", b"PROPFIND", False),
    ("a registered method with a hyphen", b"VERSION-CONTROL", False),
    ("Squid's PURGE, which squeak implements", b"PURGE", False),
    ("RFC 9110 §9.1: delete is not DELETE, and an origin may upper-case it", b"delete", True),
    ("mixed case", b"Delete", True),
    ("mixed case", b"dElEtE", True),
    ("lower-case GET", b"get", True),
    ("lower-case CONNECT", b"connect", True),
    ("WebDAV methods too", b"propfind", True),
    ("WebDAV methods too", b"Mkcol", True),
    ("PATCH (RFC 5789)", b"patch", True),
    ("Squid's PURGE", b"purge", True),
    ("a hyphenated registered method", b"version-control", True),
    ("an extension method is not judged", b"m-search", False),
    ("an extension method is not judged", b"Foo", False),
    ("an extension method is not judged", b"FOO", False),
]


class MiscasedMethodTests(SynchronousTestCase):
    """
    Tests for L{why_miscased}: registered methods in another case are
    refused, so that a method rule cannot be bypassed by case.
    """

    def test_table(self) -> None:
        """
        Exactly the rows marked refused get a reason, which names the
        method and RFC 9110 §9.1.
        """
        wrong = [
            (why, method, why_miscased(method))
            for why, method, refused in MISCASED
            if (why_miscased(method) is not None) != refused
        ]
        self.assertEqual(wrong, [])
        reason = why_miscased(b"delete")
        assert reason is not None
        self.assertIn("delete", reason)
        self.assertIn("DELETE", reason)
        self.assertIn("RFC 9110 §9.1", reason)
