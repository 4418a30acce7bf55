"""
The C{[[cache_peer]]} and C{[hierarchy]} configuration: what is accepted,
and what each mistake is told (file, key, line).
"""

from __future__ import annotations

import base64
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from squeak.config import Config, ConfigError, parse_config
from squeak.upstream.peers import HIERARCHY_KEYS, PASSTHRU, PEER_KEYS, CachePeer
from squeak.upstream.selection import SelectionKind

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[acl]
lan = { src = ["10.0.0.0/8"] }

[[cache_peer]]
name = "north"
host = "proxy-north.example"
port = 3128
login = "child:s3cr:et"
weight = 2
connect_timeout = "2s"
max_connections = 50
access = ["allow lan"]

[[cache_peer]]
name = "south"
host = "[2001:db8::1]"
port = 8080
tls = true
default = true

[hierarchy]
selection = "carp"
never_direct = ["allow lan"]
always_direct = ["deny all"]
max_fails = 3
fail_timeout = "30s"
probe = "http"
probe_interval = "5s"
"""


def _error(text: str) -> str:
    try:
        parse_config(text, "squeak.toml")
    except ConfigError as e:
        return str(e)
    raise AssertionError("no error")


class ParseTests(SynchronousTestCase):
    def test_defaults_have_no_hierarchy(self) -> None:
        """Without [[cache_peer]] every request goes direct."""
        self.assertFalse(Config().hierarchy.enabled)
        self.assertFalse(parse_config("", "x.toml").hierarchy.enabled)

    def test_a_full_configuration(self) -> None:
        """Every key is read into its value."""
        hierarchy = parse_config(GOOD, "squeak.toml").hierarchy
        north, south = hierarchy.peers
        self.assertEqual(
            (north.name, north.host, north.port, north.weight, north.connect_timeout),
            ("north", "proxy-north.example", 3128, 2, 2.0),
        )
        self.assertEqual(north.max_connections, 50)
        self.assertIsNotNone(north.access)
        self.assertEqual(
            (south.host, south.port, south.tls, south.default), ("2001:db8::1", 8080, True, True)
        )
        self.assertEqual(south.address, "[2001:db8::1]:8080")
        self.assertEqual(hierarchy.selection, SelectionKind.CARP)
        self.assertEqual((hierarchy.max_fails, hierarchy.fail_timeout), (3, 30.0))
        self.assertEqual((hierarchy.probe, hierarchy.probe_interval), ("http", 5.0))
        self.assertIsNotNone(hierarchy.never_direct)
        self.assertIsNone(hierarchy.prefer_direct)

    def test_login_is_never_shown(self) -> None:
        """The password is not in repr (logs) nor in check-config's summary."""
        hierarchy = parse_config(GOOD, "squeak.toml").hierarchy
        self.assertNotIn("s3cr", repr(hierarchy))
        self.assertNotIn("s3cr", "\n".join(hierarchy.describe()))

    def test_describe(self) -> None:
        """check-config names each parent, the routing and the health settings."""
        lines = parse_config(GOOD, "squeak.toml").hierarchy.describe()
        self.assertEqual(
            lines,
            [
                "parent:      north proxy-north.example:3128 (weight 2, login set, "
                "max_connections 50, access: allow lan)",
                "parent:      south [2001:db8::1]:8080 (weight 1, tls, default)",
                "hierarchy:   selection carp, always_direct: deny all, never_direct: allow lan",
                "health:      down after 3 connect failures in 30s, http probe every 5s",
            ],
        )
        self.assertEqual(parse_config("", "x.toml").hierarchy.describe(), [])

    def test_proxy_authorization(self) -> None:
        """
        login is Basic (a password may hold ':'); PASSTHRU forwards the
        client's own; none sends nothing.
        """
        peer = CachePeer("p", "h", 1, login="child:s3cr:et")
        self.assertEqual(
            peer.proxy_authorization(b"Basic other"),
            b"Basic " + base64.b64encode(b"child:s3cr:et"),
        )
        self.assertEqual(
            CachePeer("p", "h", 1, login=PASSTHRU).proxy_authorization(b"Basic x"), b"Basic x"
        )
        self.assertIsNone(CachePeer("p", "h", 1).proxy_authorization(b"Basic x"))


#: (why, TOML, expected message fragment including file:line: key).
ERRORS = [
    (
        "a port out of range",
        '[[cache_peer]]\nname = "a"\nhost = "h"\nport = 70000\n',
        "squeak.toml:4: cache_peer[1].port: expected a port 1-65535",
    ),
    (
        "the second peer's unknown key, with a suggestion",
        '[[cache_peer]]\nname = "a"\nhost = "h"\nport = 1\n'
        '[[cache_peer]]\nname = "b"\nhost = "h"\nport = 2\nwieght = 3\n',
        "squeak.toml:9: cache_peer[2].wieght: unknown key (did you mean weight?)",
    ),
    (
        "a duplicate name",
        '[[cache_peer]]\nname = "a"\nhost = "h"\nport = 1\n'
        '[[cache_peer]]\nname = "a"\nhost = "h"\nport = 2\n',
        'squeak.toml:6: cache_peer[2].name: the name "a" is used by another cache_peer',
    ),
    (
        "a sibling",
        '[[cache_peer]]\nname = "a"\nhost = "h"\nport = 1\ntype = "sibling"\n',
        'cache_peer[1].type: only "parent" peers are supported',
    ),
    (
        "a login without a password, not echoed",
        '[[cache_peer]]\nname = "a"\nhost = "h"\nport = 1\nlogin = "justauser"\n',
        'squeak.toml:5: cache_peer[1].login: expected "user:password"',
    ),
    (
        "a missing host",
        '[[cache_peer]]\nname = "a"\nport = 1\n',
        "cache_peer[1]: a cache_peer needs host",
    ),
    (
        "an unknown ACL in a peer's access",
        '[[cache_peer]]\nname = "a"\nhost = "h"\nport = 1\naccess = ["allow lna"]\n',
        'squeak.toml:5: cache_peer[1].access: rule "allow lna" names an unknown ACL "lna"',
    ),
    (
        "an unknown selection",
        '[[cache_peer]]\nname = "a"\nhost = "h"\nport = 1\n[hierarchy]\nselection = "random"\n',
        "squeak.toml:6: hierarchy.selection: expected one of first-up, round-robin, "
        "weighted-round-robin, carp",
    ),
    (
        "never_direct without a parent",
        '[hierarchy]\nnever_direct = ["allow all"]\n',
        "squeak.toml:2: hierarchy.never_direct: routing rules need at least one [[cache_peer]]",
    ),
    (
        "a bad probe",
        '[hierarchy]\nprobe = "icmp"\n',
        "hierarchy.probe: expected one of tcp, http, off",
    ),
    (
        "an unknown hierarchy key",
        "[hierarchy]\nmax_fail = 3\n",
        "hierarchy.max_fail: unknown key (did you mean max_fails?)",
    ),
]


class ErrorTests(SynchronousTestCase):
    def test_errors_table(self) -> None:
        """Each mistake is named with its file, line and key."""
        wrong = [
            (why, got, want) for why, text, want in ERRORS if want not in (got := _error(text))
        ]
        self.assertEqual(wrong, [])

    def test_a_bad_login_is_not_echoed(self) -> None:
        """A malformed login never appears in the message (it may be a password)."""
        message = _error(
            '[[cache_peer]]\nname = "a"\nhost = "h"\nport = 1\nlogin = "pass\\nword"\n'
        )
        self.assertNotIn("pass", message.split("login:")[1].replace("password", ""))


class DocumentationTests(SynchronousTestCase):
    def test_every_key_is_documented(self) -> None:
        """docs/configuration.md and etc/squeak.toml mention every key of both tables."""
        docs = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
        sample = (ROOT / "etc" / "squeak.toml").read_text(encoding="utf-8")
        missing = [
            (where, key)
            for key in [*PEER_KEYS, *HIERARCHY_KEYS]
            for where, text in (("docs", docs), ("sample", sample))
            if f"`{key}`" not in text and f"{key} =" not in text
        ]
        self.assertEqual(missing, [])
