"""
L{squeak.net.deadlines}: timeouts kept in a dict and swept by one timer, on a
fake clock.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from squeak.net.deadlines import Deadlines, deadline_resolution


class DeadlinesTests(SynchronousTestCase):
    """
    A timeout fires at its deadline or up to one resolution later, never
    earlier; setting it again moves it; cancelling forgets it; the timer
    lapses once a sweep finds nothing to watch.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.deadlines = Deadlines(self.clock, resolution=1.0)
        self.fired: list[str] = []

    def test_fires_not_before_and_within_a_resolution_after(self) -> None:
        """
        A 2.5 s timeout set at 0 has not fired at 2.5 s minus a little,
        and has fired by 2.5 s plus one resolution; only once.
        """
        self.deadlines.set("a", 2.5, self.fired.append, "a")
        self.clock.advance(2.4)
        self.assertEqual(self.fired, [])
        self.clock.advance(1.1)
        self.assertEqual(self.fired, ["a"])
        self.clock.advance(10)
        self.assertEqual((self.fired, len(self.deadlines)), (["a"], 0))

    def test_setting_again_moves_the_deadline(self) -> None:
        """
        Setting a key again replaces its deadline (a read timeout restarted
        by data): it fires that long after the last setting.
        """
        self.deadlines.set("a", 3, self.fired.append, "a")
        self.clock.advance(2)
        self.deadlines.set("a", 3, self.fired.append, "a")
        self.clock.advance(2)
        self.assertEqual(self.fired, [])
        self.clock.advance(1)
        self.assertEqual(self.fired, ["a"])

    def test_cancel_forgets_and_the_timer_lapses(self) -> None:
        """
        A cancelled timeout never fires.  Cancelling the last one leaves the
        timer (lazy: a miss sets and cancels its timeouts within a moment,
        and re-scheduling the timer for each costs more than the timer),
        and the sweep that finds nothing to watch leaves no delayed call.
        """
        self.deadlines.set("a", 1, self.fired.append, "a")
        self.deadlines.set("b", 1, self.fired.append, "b")
        self.deadlines.cancel("a")
        self.deadlines.cancel("b")
        self.deadlines.cancel("never set")
        self.assertEqual((len(self.deadlines), len(self.clock.getDelayedCalls())), (0, 1))
        self.deadlines.set("c", 3, self.fired.append, "c")
        self.deadlines.cancel("c")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(5)
        self.assertEqual(self.fired, [])

    def test_close_forgets_all_and_leaves_no_timer(self) -> None:
        """
        At shutdown, L{Deadlines.close} drops every timeout and the timer:
        nothing fires, no delayed call is left; a later set starts afresh.
        """
        self.deadlines.set("a", 1, self.fired.append, "a")
        self.deadlines.close()
        self.assertEqual((len(self.deadlines), self.clock.getDelayedCalls()), (0, []))
        self.clock.advance(5)
        self.assertEqual(self.fired, [])
        self.deadlines.set("b", 1, self.fired.append, "b")
        self.clock.advance(1)
        self.assertEqual(self.fired, ["b"])

    def test_one_timer_for_many(self) -> None:
        """
        However many timeouts are set, the reactor holds one delayed call,
        and each fires on its own deadline.
        """
        for n in range(100):
            self.deadlines.set(n, 1 + n % 5, self.fired.append, str(n))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(1)
        self.assertEqual(sorted(self.fired, key=int), [str(n) for n in range(0, 100, 5)])
        self.clock.advance(4)
        self.assertEqual(len(self.fired), 100)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_callbacks_may_cancel_and_set(self) -> None:
        """
        A callback that cancels another due timeout, or sets a new one,
        is honoured within the same sweep and the next.
        """

        def first() -> None:
            self.fired.append("first")
            self.deadlines.cancel("second")
            self.deadlines.set("third", 1, self.fired.append, "third")

        self.deadlines.set("first", 1, first)
        self.deadlines.set("second", 1, self.fired.append, "second")
        self.clock.advance(1)
        self.assertEqual(self.fired, ["first"])
        self.clock.advance(1)
        self.assertEqual(self.fired[-1], "third")

    def test_resolution(self) -> None:
        """
        A tenth of the shortest timeout, at most a second, at least 10 ms.
        """
        self.assertEqual(
            [deadline_resolution(t) for t in (60.0, 5.0, 0.5, 0.01)], [1.0, 0.5, 0.05, 0.01]
        )
