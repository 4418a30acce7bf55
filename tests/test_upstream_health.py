"""
Tests for L{squeak.upstream.health}: down after max_fails within
fail_timeout, each change reported once, probed or timed return.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from squeak.upstream.health import Change, HealthPolicy, MemberHealth


class CountingTests(SynchronousTestCase):
    def test_down_after_max_fails(self) -> None:
        """The third failure of three within the window takes it down, once."""
        health = MemberHealth(HealthPolicy(max_fails=3, fail_timeout=10.0))
        self.assertEqual([health.failed(t) for t in (0.0, 1.0)], [None, None])
        self.assertTrue(health.usable(1.0))
        self.assertEqual(health.failed(2.0), Change.DOWN)
        self.assertFalse(health.usable(2.0))

    def test_old_failures_expire(self) -> None:
        """Failures older than fail_timeout do not count."""
        health = MemberHealth(HealthPolicy(max_fails=2, fail_timeout=10.0))
        self.assertIsNone(health.failed(0.0))
        self.assertIsNone(health.failed(10.5))
        self.assertTrue(health.usable(10.5))

    def test_success_resets_the_count(self) -> None:
        """A success between failures starts the count again."""
        health = MemberHealth(HealthPolicy(max_fails=2, fail_timeout=10.0))
        health.failed(0.0)
        self.assertIsNone(health.succeeded(1.0))
        self.assertIsNone(health.failed(2.0))
        self.assertTrue(health.usable(2.0))


class ReturnTests(SynchronousTestCase):
    def test_unprobed_is_tried_after_fail_timeout(self) -> None:
        """
        Without probing, a down server is offered again after fail_timeout;
        a failed trial takes it out again without a second report, and a
        success reports it up.
        """
        health = MemberHealth(HealthPolicy(max_fails=1, fail_timeout=5.0))
        self.assertEqual(health.failed(0.0), Change.DOWN)
        self.assertFalse(health.usable(4.9))
        self.assertTrue(health.usable(5.0))
        self.assertIsNone(health.failed(5.0))
        self.assertFalse(health.usable(9.9))
        self.assertTrue(health.usable(10.0))
        self.assertEqual(health.succeeded(10.0), Change.UP)
        self.assertIsNone(health.succeeded(11.0))

    def test_probed_stays_down_until_success(self) -> None:
        """With probing, only a success brings it back, however long it takes."""
        health = MemberHealth(HealthPolicy(max_fails=1, fail_timeout=5.0, probed=True))
        health.failed(0.0)
        self.assertTrue(health.needs_probe())
        self.assertFalse(health.usable(1000.0))
        self.assertEqual(health.succeeded(1000.0), Change.UP)
        self.assertFalse(health.needs_probe())
        self.assertTrue(health.usable(1000.0))

    def test_unprobed_never_needs_probe(self) -> None:
        """Without probing, nothing is asked of a prober."""
        health = MemberHealth(HealthPolicy(max_fails=1))
        health.failed(0.0)
        self.assertFalse(health.needs_probe())
