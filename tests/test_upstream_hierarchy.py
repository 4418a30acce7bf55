"""
Routing one request in a cache hierarchy: the hops and their log codes,
as Squid's peer_select.cc decides them.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

from twisted.trial.unittest import SynchronousTestCase

from squeak.access.acl import builtin_acls, compile_acls
from squeak.access.facts import Facts, LocalTime
from squeak.upstream.health import Change
from squeak.upstream.hierarchy import DIRECT, Hierarchy, hierarchy_code
from squeak.upstream.peers import HierarchyConfig, parse_hierarchy
from squeak.upstream.selection import SelectionKind


def _acls() -> dict[str, object]:
    acls = dict(builtin_acls())
    acls.update(
        compile_acls(
            {"lan": {"src": ["10.0.0.0/8"]}, "intranet": {"dstdomain": [".corp.example"]}}, ""
        )
    )
    return acls


def _hierarchy(peers: list[dict[str, object]], **table: object) -> Hierarchy:
    return Hierarchy(parse_hierarchy(peers, table or None, _acls(), ""))  # type: ignore[arg-type]


def _facts(client: str = "10.1.1.1", host: str = "www.example") -> Facts:
    return Facts(
        client_ip=ipaddress.ip_address(client),
        host=host,
        port=80,
        method="GET",
        scheme="http",
        url=f"http://{host}/",
        path="/",
        now_local=LocalTime(0, 600),
    )


PEERS = [
    {"name": "a", "host": "10.0.0.1", "port": 3128},
    {"name": "b", "host": "10.0.0.2", "port": 3128},
    {"name": "c", "host": "10.0.0.3", "port": 3128},
]


def _route(
    hierarchy: Hierarchy, facts: Facts | None = None, key: bytes = b"http://x/"
) -> list[str]:
    route = hierarchy.route(facts or _facts(), key, 0.0)
    return [f"{hop.code}/{hop.peer.name if hop.peer else '-'}" for hop in route.hops]


class RouteTests(SynchronousTestCase):
    def test_routing_table(self) -> None:
        """Each configuration routes as Squid's peer selection would."""
        cases = [
            (
                "parents first, direct last (prefer_direct off)",
                {},
                _facts(),
                ["FIRSTUP_PARENT/a", "ANY_OLD_PARENT/b", "ANY_OLD_PARENT/c", "HIER_DIRECT/-"],
            ),
            (
                "never_direct: parents only",
                {"never_direct": ["allow all"]},
                _facts(),
                ["FIRSTUP_PARENT/a", "ANY_OLD_PARENT/b", "ANY_OLD_PARENT/c"],
            ),
            (
                "always_direct wins over never_direct",
                {"never_direct": ["allow all"], "always_direct": ["allow intranet"]},
                _facts(host="wiki.corp.example"),
                ["HIER_DIRECT/-"],
            ),
            (
                "always_direct not matching",
                {"always_direct": ["allow intranet"]},
                _facts(),
                ["FIRSTUP_PARENT/a", "ANY_OLD_PARENT/b", "ANY_OLD_PARENT/c", "HIER_DIRECT/-"],
            ),
            (
                "prefer_direct: direct first",
                {"prefer_direct": ["allow all"]},
                _facts(),
                ["HIER_DIRECT/-", "FIRSTUP_PARENT/a", "ANY_OLD_PARENT/b", "ANY_OLD_PARENT/c"],
            ),
            (
                "never_direct for the LAN only, another client",
                {"never_direct": ["allow lan"]},
                _facts(client="192.168.1.1"),
                ["FIRSTUP_PARENT/a", "ANY_OLD_PARENT/b", "ANY_OLD_PARENT/c", "HIER_DIRECT/-"],
            ),
        ]
        wrong = []
        for why, table, facts, want in cases:
            got = _route(_hierarchy(PEERS, **table), facts)
            if got != want:
                wrong.append((why, got, want))
        self.assertEqual(wrong, [])

    def test_selection_codes(self) -> None:
        """The first parent is logged under its selection's code (Squid's hier_code names)."""
        self.assertEqual(
            [
                hierarchy_code(kind)
                for kind in SelectionKind
                if kind.value in ("first-up", "round-robin", "weighted-round-robin", "carp")
            ],
            ["FIRSTUP_PARENT", "ROUNDROBIN_PARENT", "ROUNDROBIN_PARENT", "CARP"],
        )

    def test_round_robin_rotates(self) -> None:
        """round-robin: each request starts one parent further."""
        hierarchy = _hierarchy(PEERS, selection="round-robin", never_direct=["allow all"])
        firsts = [_route(hierarchy)[0] for _ in range(4)]
        self.assertEqual(
            firsts,
            [
                "ROUNDROBIN_PARENT/a",
                "ROUNDROBIN_PARENT/b",
                "ROUNDROBIN_PARENT/c",
                "ROUNDROBIN_PARENT/a",
            ],
        )

    def test_weighted_round_robin_follows_weights(self) -> None:
        """weighted-round-robin: shares as the weights over a cycle."""
        peers = [dict(PEERS[0], weight=3), dict(PEERS[1], weight=1)]
        hierarchy = _hierarchy(peers, selection="weighted-round-robin")
        firsts = Counter(_route(hierarchy)[0] for _ in range(40))
        self.assertEqual(firsts, {"ROUNDROBIN_PARENT/a": 30, "ROUNDROBIN_PARENT/b": 10})

    def test_default_parent_last(self) -> None:
        """A default parent is tried after the selected ones, as DEFAULT_PARENT."""
        peers = [dict(PEERS[0], default=True), PEERS[1]]
        self.assertEqual(
            _route(_hierarchy(peers, never_direct=["allow all"])),
            ["FIRSTUP_PARENT/b", "DEFAULT_PARENT/a"],
        )

    def test_peer_access_rules(self) -> None:
        """A parent whose access rules refuse the request is not offered."""
        peers = [dict(PEERS[0], access=["allow lan"]), PEERS[1]]
        hierarchy = _hierarchy(peers, never_direct=["allow all"])
        self.assertEqual(_route(hierarchy, _facts()), ["FIRSTUP_PARENT/a", "ANY_OLD_PARENT/b"])
        self.assertEqual(_route(hierarchy, _facts(client="192.168.0.9")), ["FIRSTUP_PARENT/b"])

    def test_max_connections(self) -> None:
        """A parent at its max_connections is skipped."""
        peers = [dict(PEERS[0], max_connections=2), PEERS[1]]
        hierarchy = _hierarchy(peers, never_direct=["allow all"])
        busy = hierarchy.route(_facts(), b"k", 0.0, lambda name: 2 if name == "a" else 0)
        self.assertEqual([hop.peer.name for hop in busy.hops if hop.peer], ["b"])

    def test_no_facts_no_rule_matches(self) -> None:
        """Without facts (nothing to match) the default routing applies."""
        hierarchy = _hierarchy(PEERS, never_direct=["allow all"])
        self.assertFalse(hierarchy.route(None, b"k", 0.0).never_direct)
        self.assertEqual(hierarchy.route(None, b"k", 0.0).hops[-1], DIRECT)


class HealthTests(SynchronousTestCase):
    def test_down_after_max_fails_reported_once_and_skipped(self) -> None:
        """max_fails failures mark a parent down once; it leaves the route; the others stay."""
        hierarchy = _hierarchy(PEERS, max_fails=2, never_direct=["allow all"])
        a = hierarchy.peer("a")
        self.assertIsNone(hierarchy.failed(a, 1.0))
        self.assertEqual(hierarchy.failed(a, 2.0), Change.DOWN)
        self.assertIsNone(hierarchy.failed(a, 3.0))
        self.assertEqual(_route(hierarchy), ["FIRSTUP_PARENT/b", "ANY_OLD_PARENT/c"])
        self.assertEqual(hierarchy.to_probe(), [a])
        self.assertEqual(hierarchy.succeeded(a, 4.0), Change.UP)
        self.assertIsNone(hierarchy.succeeded(a, 5.0))
        self.assertEqual(_route(hierarchy)[0], "FIRSTUP_PARENT/a")

    def test_every_parent_down_under_never_direct_names_them(self) -> None:
        """No hop left: the route is empty and names the parents for the 503."""
        hierarchy = _hierarchy(PEERS, max_fails=1, never_direct=["allow all"])
        for name in "abc":
            hierarchy.failed(hierarchy.peer(name), 1.0)
        route = hierarchy.route(_facts(), b"k", 2.0)
        self.assertEqual((route.hops, route.never_direct), ((), True))
        self.assertEqual(hierarchy.names_for(_facts()), ("a", "b", "c"))

    def test_without_probing_a_parent_is_tried_after_fail_timeout(self) -> None:
        """probe = "off": a down parent comes back for a trial after fail_timeout."""
        hierarchy = _hierarchy(PEERS, max_fails=1, probe="off", fail_timeout=10)
        hierarchy.failed(hierarchy.peer("a"), 0.0)
        self.assertEqual(hierarchy.to_probe(), [])
        self.assertEqual(hierarchy.route(_facts(), b"k", 5.0).hops[0].peer.name, "b")  # type: ignore[union-attr]
        self.assertEqual(hierarchy.route(_facts(), b"k", 10.0).hops[0].peer.name, "a")  # type: ignore[union-attr]


class CarpTests(SynchronousTestCase):
    def peers(self) -> list[dict[str, object]]:
        return [dict(PEERS[i], weight=w) for i, w in enumerate((1, 2, 3))]

    def test_same_url_same_parent(self) -> None:
        """CARP: a URL always goes to the same parent."""
        hierarchy = _hierarchy(self.peers(), selection="carp", never_direct=["allow all"])
        for n in range(50):
            key = b"http://example.test/%d" % n
            self.assertEqual(len({_route(hierarchy, key=key)[0] for _ in range(3)}), 1)

    def test_ten_thousand_urls_spread_within_ten_percent_of_the_weights(self) -> None:
        """10,000 URLs over weights 1:2:3 land within 10 % of each share."""
        hierarchy = _hierarchy(self.peers(), selection="carp", never_direct=["allow all"])
        counts = Counter(
            hierarchy.route(None, b"http://host%d.test/path/%d" % (n % 97, n), 0.0)
            .hops[0]
            .peer.name  # type: ignore[union-attr]
            for n in range(10000)
        )
        for name, weight in (("a", 1), ("b", 2), ("c", 3)):
            share = 10000 * weight / 6
            self.assertLess(abs(counts[name] - share), 0.1 * share, counts)

    def test_a_parent_down_moves_only_its_share(self) -> None:
        """One parent down: only its URLs move, and they come back with it."""
        hierarchy = _hierarchy(
            self.peers(), selection="carp", max_fails=1, never_direct=["allow all"]
        )
        keys = [b"http://example.test/%d" % n for n in range(2000)]

        def first(key: bytes) -> str:
            peer = hierarchy.route(None, key, 0.0).hops[0].peer
            assert peer is not None
            return peer.name

        before = {key: first(key) for key in keys}
        hierarchy.failed(hierarchy.peer("b"), 0.0)
        during = {key: first(key) for key in keys}
        moved = [key for key in keys if before[key] != during[key]]
        self.assertEqual(sorted(moved), sorted(k for k in keys if before[k] == "b"))
        self.assertEqual(hierarchy.route(None, keys[0], 0.0).hops[0].code, "CARP")
        hierarchy.succeeded(hierarchy.peer("b"), 1.0)
        self.assertEqual({key: first(key) for key in keys}, before)

    def test_default_config_routes_nothing(self) -> None:
        """An empty configuration has no parents: direct only."""
        self.assertEqual(Hierarchy(HierarchyConfig()).route(None, b"k", 0.0).hops, (DIRECT,))
