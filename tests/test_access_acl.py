# -*- test-case-name: tests.test_access_acl -*-
"""
Tests for L{squeak.access.acl}: the facts, each ACL kind's matcher, the
built-ins, and the errors a bad definition gives.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import time
from datetime import datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squeak.access.acl import (
    Acl,
    AclError,
    AddressSet,
    DomainSet,
    Facts,
    LocalTime,
    Need,
    address_literal,
    builtin_acls,
    client_address,
    compile_acl,
    compile_acls,
    normalize_domain,
    normalize_host,
)
from squeak.access.facts import hashed_address

ip = ipaddress.ip_address

#: Monday 10:00.
MONDAY_10 = LocalTime(0, 600)

BASE = Facts(
    client_ip=ip("192.168.1.10"),
    method="GET",
    scheme="http",
    host="www.example.com",
    port=80,
    url="http://www.example.com/images/a.GIF?x=1",
    path="/images/a.GIF?x=1",
    now_local=MONDAY_10,
    dst_addresses=(ip("93.184.216.34"),),
    user=None,
    user_agent="Mozilla/5.0 (X11; Linux) Firefox/128.0",
    client_connections=3,
)


def facts(**changes: Any) -> Facts:
    """L{BASE} with some facts changed."""
    return dataclasses.replace(BASE, **changes)


MATCHES = [  # (why, ACL definition, facts, whether it matches)
    ("src: address in a network", {"src": ["192.168.0.0/16"]}, BASE, True),
    ("src: address outside", {"src": ["10.0.0.0/8"]}, BASE, False),
    ("src: bare address is one host", {"src": ["192.168.1.10"]}, BASE, True),
    ("src: IPv6 network", {"src": ["fd00::/8"]}, facts(client_ip=ip("fd12::1")), True),
    ("src: IPv6 not in IPv4 set", {"src": ["0.0.0.0/0"]}, facts(client_ip=ip("fd12::1")), False),
    (
        "src: an IPv4-mapped client matches the IPv4 entry",
        {"src": ["192.168.0.0/16"]},
        facts(client_ip=ip("::ffff:192.168.1.10")),
        True,
    ),
    ("src: a single string is one entry", {"src": "192.168.1.0/24"}, BASE, True),
    ("src: empty list never matches", {"src": []}, BASE, False),
    ("dst: any resolved address", {"dst": ["93.184.0.0/16"]}, BASE, True),
    (
        "dst: the second address matches",
        {"dst": ["127.0.0.0/8"]},
        facts(dst_addresses=(ip("93.184.216.34"), ip("127.0.0.1"))),
        True,
    ),
    (
        "dst: a failed lookup matches nothing",
        {"dst": ["0.0.0.0/0"]},
        facts(dst_addresses=()),
        False,
    ),
    ("dstdomain: exact name", {"dstdomain": ["www.example.com"]}, BASE, True),
    ("dstdomain: exact does not match a parent", {"dstdomain": ["example.com"]}, BASE, False),
    (
        "dstdomain: exact does not match a child",
        {"dstdomain": ["example.com"]},
        facts(host="a.example.com"),
        False,
    ),
    ("dstdomain: suffix matches a child", {"dstdomain": [".example.com"]}, BASE, True),
    ("dstdomain: suffix matches a grandchild", {"dstdomain": [".com"]}, BASE, True),
    (
        "dstdomain: suffix matches the domain itself, as in Squid",
        {"dstdomain": [".example.com"]},
        facts(host="example.com"),
        True,
    ),
    (
        "dstdomain: suffix is by label, not by string",
        {"dstdomain": [".example.com"]},
        facts(host="badexample.com"),
        False,
    ),
    ("dstdomain: entries are case-insensitive", {"dstdomain": ["WWW.Example.COM."]}, BASE, True),
    (
        "dstdomain: IDNA entries match the A-label host",
        {"dstdomain": [".bücher.example"]},
        facts(host="www.xn--bcher-kva.example"),
        True,
    ),
    ("dstdomain: IP literal host", {"dstdomain": ["10.1.2.3"]}, facts(host="10.1.2.3"), True),
    ("port: single", {"port": [80]}, BASE, True),
    ("port: string", {"port": ["80"]}, BASE, True),
    ("port: range includes its ends", {"port": ["1025-65535"]}, facts(port=1025), True),
    ("port: below a range", {"port": ["1025-65535"]}, facts(port=1024), False),
    ("method: exact", {"method": ["GET", "HEAD"]}, BASE, True),
    ("method: CONNECT", {"method": ["CONNECT"]}, BASE, False),
    ("method: case-sensitive (RFC 9110 §9.1)", {"method": ["GET"]}, facts(method="get"), False),
    ("proto: http", {"proto": ["HTTP"]}, BASE, True),
    ("proto: https", {"proto": ["https"]}, BASE, False),
    ("proto: CONNECT is authority", {"proto": ["authority"]}, facts(scheme="authority"), True),
    ("url_regex: search anywhere", {"url_regex": [r"\.gif\b"]}, BASE, False),
    (
        "url_regex: case-insensitive option",
        {"url_regex": [r"\.gif\b"], "case_insensitive": True},
        BASE,
        True,
    ),
    ("url_regex: sees the host", {"url_regex": ["^http://www\\."]}, BASE, True),
    ("urlpath_regex: sees the path and query", {"urlpath_regex": ["^/images/"]}, BASE, True),
    ("urlpath_regex: not the host", {"urlpath_regex": ["example"]}, BASE, False),
    ("browser: User-Agent regex", {"browser": ["Firefox/"]}, BASE, True),
    ("browser: no User-Agent never matches", {"browser": [".*"]}, facts(user_agent=None), False),
    ("time: weekday letters and range", {"time": "MTWHF 08:00-18:00"}, BASE, True),
    ("time: end is excluded", {"time": "MTWHF 08:00-10:00"}, BASE, False),
    ("time: start is included", {"time": "10:00-11:00"}, BASE, True),
    ("time: another day", {"time": "A"}, BASE, False),
    ("time: Sunday is S", {"time": "S"}, facts(now_local=LocalTime(6, 0)), True),
    ("time: D is Monday to Friday", {"time": "D"}, facts(now_local=LocalTime(4, 0)), True),
    ("time: day names", {"time": "sat,sunday"}, facts(now_local=LocalTime(5, 1439)), True),
    ("time: any of several entries", {"time": ["A", "M 09:00-10:01"]}, BASE, True),
    ("time: up to 24:00", {"time": "M 23:00-24:00"}, facts(now_local=LocalTime(0, 1439)), True),
    ("proxy_auth: REQUIRED matches any user", {"proxy_auth": "REQUIRED"}, facts(user="x"), True),
    ("proxy_auth: a listed user", {"proxy_auth": ["alice", "bob"]}, facts(user="bob"), True),
    ("proxy_auth: another user", {"proxy_auth": ["alice"]}, facts(user="Alice"), False),
    ("maxconn: more than N", {"maxconn": 2}, BASE, True),
    ("maxconn: exactly N is not more", {"maxconn": 3}, BASE, False),
]

BAD = [  # (why, ACL definition, message)
    (
        "not a table",
        ["10.0.0.0/8"],
        'expected a table like { src = ["10.0.0.0/8"] }, got an array',
    ),
    (
        "no type",
        {},
        "an ACL needs a type, one of "
        + ", ".join(
            [
                "src",
                "dst",
                "dstdomain",
                "port",
                "method",
                "proto",
                "url_regex",
                "urlpath_regex",
                "time",
                "proxy_auth",
                "maxconn",
                "browser",
            ]
        ),
    ),
    ("two types", {"src": [], "dst": []}, "an ACL has exactly one type, got dst and src"),
    ("unknown key", {"srcc": []}, 'unknown ACL type or option "srcc" (did you mean src?)'),
    (
        "host bits",
        {"src": ["10.0.0.1/8"]},
        '"10.0.0.1/8" has host bits set (did you mean "10.0.0.0/8"?)',
    ),
    (
        "not a network",
        {"dst": ["x"]},
        'expected an IP network like "192.168.0.0/16" or "::1/128", got "x"',
    ),
    (
        "not strings",
        {"src": [1]},
        'src: expected a string or an array of strings like ["..."], got an array',
    ),
    (
        "bad domain",
        {"dstdomain": ["a..b"]},
        'expected a domain like "example.com" or ".example.com", got "a..b"',
    ),
    ("bad IDNA", {"dstdomain": ["a\u200db.example"]}, None),
    ("port out of range", {"port": ["70000"]}, 'ports go up to 65535, got "70000"'),
    ("port range backwards", {"port": ["90-80"]}, 'the range "90-80" ends before it starts'),
    (
        "port not a number",
        {"port": ["http"]},
        'expected a port like 443 or a range like "1025-65535", got "http"',
    ),
    (
        "port as a boolean",
        {"port": [True]},
        'port: expected a string or an array of strings like [80, "1025-65535"], got an array',
    ),
    (
        "lower-case method",
        {"method": ["get"]},
        'methods are case-sensitive (RFC 9110 §9.1) and "get" would match nothing clients '
        'send (did you mean "GET"?)',
    ),
    (
        "method with a space",
        {"method": ["GE T"]},
        'expected a method like "GET" or "CONNECT", got "GE T"',
    ),
    ("unknown proto", {"proto": ["htps"]}, 'unknown protocol "htps" (did you mean "https"?)'),
    (
        "bad regex",
        {"urlpath_regex": ["("]},
        'invalid regular expression "(": missing ), unterminated subpattern at position 0',
    ),
    (
        "Squid's -i",
        {"url_regex": ["-i", "x"]},
        '"-i" is Squid syntax; write case_insensitive = true in the ACL',
    ),
    (
        "case_insensitive on src",
        {"src": [], "case_insensitive": True},
        "case_insensitive applies to url_regex, urlpath_regex, browser only not src",
    ),
    (
        "case_insensitive not a boolean",
        {"browser": [], "case_insensitive": "yes"},
        'case_insensitive: expected true or false, got "yes"',
    ),
    (
        "bad time",
        {"time": "weekends"},
        'expected days and/or a time range like "MTWHF 08:00-18:00" or "sat,sun", got "weekends"',
    ),
    (
        "time across midnight",
        {"time": "22:00-06:00"},
        'the range in "22:00-06:00" ends before it starts; a range across midnight is two '
        'entries, e.g. "22:00-24:00" and "00:00-06:00"',
    ),
    (
        "time past 24:00",
        {"time": "23:00-24:30"},
        'times go from 00:00 to 24:00, got "23:00-24:30"',
    ),
    (
        "REQUIRED and names",
        {"proxy_auth": ["REQUIRED", "bob"]},
        '"REQUIRED" (any authenticated user) cannot be mixed with user names',
    ),
    (
        "empty proxy_auth",
        {"proxy_auth": []},
        'proxy_auth needs "REQUIRED" or at least one user name',
    ),
    (
        "user with a colon",
        {"proxy_auth": ["a:b"]},
        'expected a user name or "REQUIRED", got "a:b"',
    ),
    (
        "maxconn not an integer",
        {"maxconn": "5"},
        'maxconn: expected an integer of at least 0, got "5"',
    ),
    (
        "maxconn has no file",
        {"maxconn_file": "x"},
        'unknown ACL type or option "maxconn_file" (did you mean maxconn?)',
    ),
    (
        "missing file",
        {"src_file": "/nonexistent/x"},
        'cannot read "/nonexistent/x": No such file or directory',
    ),
    ("file path not a string", {"src_file": 1}, "src_file: expected a file path, got 1"),
]


class MatchTests(SynchronousTestCase):
    """
    Tests for each ACL kind's matcher.
    """

    def test_matches(self) -> None:
        """
        Each row's ACL matches its facts, or not, as the row says.
        """
        wrong = [
            (why, got)
            for why, spec, given_facts, want in MATCHES
            if (got := compile_acl("x", spec, "/").match(given_facts)) != want
        ]
        self.assertEqual(wrong, [])

    def test_needs(self) -> None:
        """
        C{dst} needs the destination's addresses, C{proxy_auth} a user, the
        other kinds nothing.
        """
        needs = {
            kind: compile_acl("x", spec, "/").need
            for kind, spec in [
                ("src", {"src": []}),
                ("dst", {"dst": []}),
                ("dstdomain", {"dstdomain": []}),
                ("proxy_auth", {"proxy_auth": "REQUIRED"}),
                ("maxconn", {"maxconn": 1}),
            ]
        }
        self.assertEqual(
            needs,
            {
                "src": Need.NOTHING,
                "dst": Need.DESTINATION,
                "dstdomain": Need.NOTHING,
                "proxy_auth": Need.USER,
                "maxconn": Need.NOTHING,
            },
        )

    def test_entries_from_files(self) -> None:
        """
        C{<kind>_file} reads one entry per line relative to the base
        directory, skipping blank lines and C{#} comments, after the inline
        entries; several files may be given.
        """
        base = self.mktemp()
        os.mkdir(base)
        with open(os.path.join(base, "a.txt"), "w") as f:
            f.write("# nets\n10.0.0.0/8\n\n  172.16.0.0/12  \n")
        with open(os.path.join(base, "b.txt"), "w") as f:
            f.write("192.0.2.1\n")
        acl = compile_acl("x", {"src": ["127.0.0.1"], "src_file": ["a.txt", "b.txt"]}, base)
        self.assertEqual(
            (acl.entries, acl.match(facts(client_ip=ip("172.20.0.1")))),
            (("127.0.0.1/32", "10.0.0.0/8", "172.16.0.0/12", "192.0.2.1/32"), True),
        )

    def test_file_errors_name_file_and_line(self) -> None:
        """
        A bad entry in a file is reported by file name and line, and the
        error has no configuration element to look for.
        """
        base = self.mktemp()
        os.mkdir(base)
        with open(os.path.join(base, "d.txt"), "w") as f:
            f.write("ok.example\n# x\nbad..example\n")
        e = self.assertRaises(AclError, compile_acl, "x", {"dstdomain_file": "d.txt"}, base)
        self.assertEqual(
            (str(e), e.name, e.element),
            (
                'd.txt:3: expected a domain like "example.com" or ".example.com", '
                'got "bad..example"',
                "x",
                None,
            ),
        )

    def test_errors(self) -> None:
        """
        Each bad definition is refused with a message saying what is wrong;
        inline entries are named so the loader can find their line.
        """
        wrong = []
        for why, spec, want in BAD:
            try:
                compile_acl("x", spec, "/")
            except AclError as e:
                got: str | None = str(e)
                if want is None:
                    got = None
            else:
                got = "no error"
            if got != want:
                wrong.append((why, got, want))
        self.assertEqual(wrong, [])

    def test_bad_names(self) -> None:
        """
        ACL names are letters, digits, C{_}, C{-} and C{.}, so that rules can
        name them.
        """
        e = self.assertRaises(AclError, compile_acl, "my acl", {"src": []}, "/")
        self.assertEqual(str(e), "ACL names are letters, digits, '_', '-' and '.', got \"my acl\"")


class BuiltinTests(SynchronousTestCase):
    """
    Tests for the built-in ACLs.
    """

    def test_builtins(self) -> None:
        """
        Each built-in matches what its name says.
        """
        acls = builtin_acls()
        cases = [
            ("all", facts(client_ip=ip("8.8.8.8")), True),
            ("all", facts(client_ip=ip("2001:db8::1")), True),
            ("localhost", facts(client_ip=ip("127.0.0.1")), True),
            ("localhost", facts(client_ip=ip("127.0.0.2")), False),
            ("localhost", facts(client_ip=ip("::1")), True),
            ("to_localhost", facts(dst_addresses=(ip("127.0.0.2"),)), True),
            ("to_localhost", facts(dst_addresses=(ip("0.0.0.0"),)), True),
            ("to_localhost", facts(dst_addresses=(ip("::"),)), True),
            ("to_localhost", facts(dst_addresses=(ip("::ffff:127.0.0.1"),)), True),
            ("to_localhost", BASE, False),
            ("localnet", facts(client_ip=ip("10.1.1.1")), True),
            ("localnet", facts(client_ip=ip("172.31.255.255")), True),
            ("localnet", facts(client_ip=ip("172.32.0.0")), False),
            ("localnet", facts(client_ip=ip("100.64.0.1")), True),
            ("localnet", facts(client_ip=ip("169.254.1.1")), True),
            ("localnet", facts(client_ip=ip("127.0.0.3")), True),
            ("localnet", facts(client_ip=ip("fd00::1")), True),
            ("localnet", facts(client_ip=ip("fe80::1")), True),
            ("localnet", facts(client_ip=ip("::1")), True),
            ("localnet", facts(client_ip=ip("8.8.8.8")), False),
            ("localnet", facts(client_ip=ip("2001:db8::1")), False),
            ("SSL_ports", facts(port=443), True),
            ("SSL_ports", facts(port=8443), False),
            ("Safe_ports", facts(port=22), False),
            ("Safe_ports", facts(port=21), True),
            ("Safe_ports", facts(port=777), True),
            ("Safe_ports", facts(port=1024), False),
            ("Safe_ports", facts(port=1025), True),
            ("CONNECT", facts(method="CONNECT"), True),
            ("CONNECT", BASE, False),
        ]
        wrong = [(name, f, want) for name, f, want in cases if acls[name].match(f) != want]
        self.assertEqual(wrong, [])

    def test_override(self) -> None:
        """
        A definition replaces the built-in of the same name; the others stay.
        """
        acls = compile_acls({"localnet": {"src": ["192.168.1.0/24"]}}, "/")
        self.assertEqual(
            (acls["localnet"].entries, acls["localnet"].builtin, acls["localhost"].builtin),
            (("192.168.1.0/24",), False, True),
        )

    def test_all_is_fixed(self) -> None:
        """
        C{all} cannot be redefined.
        """
        e = self.assertRaises(AclError, compile_acls, {"all": {"src": ["10.0.0.0/8"]}}, "/")
        self.assertEqual(
            (str(e), e.name), ("all is built in (every client) and cannot be redefined", "all")
        )

    def test_restricts_clients(self) -> None:
        """
        A positive C{src} narrower than an address family, or C{proxy_auth},
        restricts who the client is; C{all}, a C{src} covering a family, or
        other kinds do not.
        """
        acls = builtin_acls()
        cases = {
            "localnet": acls["localnet"],
            "all": acls["all"],
            "SSL_ports": acls["SSL_ports"],
            "v6 all": compile_acl("x", {"src": ["::/0"]}, "/"),
            "mapped": compile_acl("x", {"src": ["::ffff:0:0/96"]}, "/"),
            "auth": compile_acl("x", {"proxy_auth": "REQUIRED"}, "/"),
        }
        self.assertEqual(
            {name: acl.restricts_clients for name, acl in cases.items()},
            {
                "localnet": True,
                "all": False,
                "SSL_ports": False,
                "v6 all": False,
                "mapped": False,
                "auth": True,
            },
        )

    def test_with_destinations(self) -> None:
        """
        The proxy's own addresses can be added to a C{dst} ACL.
        """
        acl = builtin_acls()["to_localhost"].with_destinations(
            [ipaddress.ip_network("192.168.1.1/32")]
        )
        self.assertEqual(
            (acl.match(facts(dst_addresses=(ip("192.168.1.1"),))), acl.builtin, acl.need),
            (True, True, Need.DESTINATION),
        )
        self.assertRaises(ValueError, builtin_acls()["localnet"].with_destinations, [])

    def test_equality_by_definition(self) -> None:
        """
        ACLs compare by name, kind and entries, not by matcher identity.
        """
        self.assertEqual(builtin_acls(), builtin_acls())
        self.assertNotEqual(
            compile_acl("x", {"src": ["10.0.0.0/8"]}, "/"),
            compile_acl("x", {"src": ["10.0.0.0/16"]}, "/"),
        )

    def test_describe(self) -> None:
        """
        An ACL describes itself as its kind and entries, shortened when long.
        """
        acls = builtin_acls()
        described = [
            acls["SSL_ports"].describe(),
            acls["Safe_ports"].describe(),
            compile_acl("x", {"browser": ["a"], "case_insensitive": True}, "/").describe(),
            compile_acl("x", {"src": []}, "/").describe(),
        ]
        self.assertEqual(
            described,
            [
                "port 443 (built-in)",
                "port 80, 443, 21, 70, 210, 280, ... (10 entries) (built-in)",
                "browser a (case-insensitive)",
                "src (no entries: never matches)",
            ],
        )


class SetTests(SynchronousTestCase):
    """
    Tests for L{AddressSet} and L{DomainSet} against naive definitions.
    """

    @given(
        st.lists(
            st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), min_size=0, max_size=30
        ),
        st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
    )
    def test_address_set_is_any_network(
        self, networks: list[tuple[int, int]], addresses: list[int]
    ) -> None:
        """
        An address is in an L{AddressSet} exactly when it is in one of the
        networks, however they overlap.
        """
        nets = [
            ipaddress.IPv4Network((number, prefix), strict=False) for number, prefix in networks
        ]
        # Addresses inside the networks too, not only random ones.
        probes = [ipaddress.IPv4Address(a) for a in addresses] + [n.network_address for n in nets]
        probes += [n.broadcast_address for n in nets]
        address_set = AddressSet(nets)
        wrong = [a for a in probes if (a in address_set) != any(a in n for n in nets)]
        self.assertEqual(wrong, [])

    @given(
        st.lists(st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)), max_size=20),
        st.lists(st.integers(0, 2**128 - 1), min_size=1, max_size=20),
    )
    def test_ipv6_address_set(self, networks: list[tuple[int, int]], addresses: list[int]) -> None:
        """
        The same holds for IPv6.
        """
        nets = [
            ipaddress.IPv6Network((number, prefix), strict=False) for number, prefix in networks
        ]
        probes = [ipaddress.IPv6Address(a) for a in addresses] + [n.network_address for n in nets]
        address_set = AddressSet(nets)
        wrong = [
            a
            for a in probes
            if a.ipv4_mapped is None and (a in address_set) != any(a in n for n in nets)
        ]
        self.assertEqual(wrong, [])

    @given(
        st.lists(
            st.tuples(
                st.lists(st.sampled_from(["a", "b", "c", "com"]), min_size=1, max_size=3),
                st.booleans(),
            ),
            max_size=8,
        ),
        st.lists(st.sampled_from(["a", "b", "c", "com"]), min_size=1, max_size=4),
    )
    def test_domain_set_is_squid_dstdomain(
        self, entries: list[tuple[list[str], bool]], host_labels: list[str]
    ) -> None:
        """
        A host is in a L{DomainSet} exactly when it equals an entry, or is
        an entry's domain or below it for suffix entries.
        """
        names = [(".".join(labels), suffix) for labels, suffix in entries]
        host = ".".join(host_labels)
        naive = any(
            host == name or (suffix and host.endswith("." + name)) for name, suffix in names
        )
        self.assertEqual(host in DomainSet(names), naive)


class NormalizeTests(SynchronousTestCase):
    """
    Tests for the helpers that put facts in the form the matchers expect.
    """

    def test_client_address(self) -> None:
        """
        Zone indexes are dropped and IPv4-mapped addresses unmapped.
        """
        self.assertEqual(
            [client_address(a) for a in ("10.0.0.1", "::ffff:10.0.0.1", "fe80::1%eth0", "::1")],
            [ip("10.0.0.1"), ip("10.0.0.1"), ip("fe80::1"), ip("::1")],
        )

    def test_hashed_address(self) -> None:
        """
        An address with its hash computed once stands for the standard
        one everywhere: equal both ways, hashed alike (one dictionary key),
        ordered, matched by the address sets, shown alike.
        """
        for text in ("10.0.0.1", "::1", "2001:db8::5"):
            standard = ip(text)
            hashed = hashed_address(standard)
            self.assertEqual(
                (hashed == standard, standard == hashed, hash(hashed) == hash(standard)),
                (True, True, True),
            )
            self.assertEqual({standard: text}[hashed], text)
            self.assertEqual((repr(hashed), str(hashed)), (repr(standard), text))
            self.assertIsInstance(hashed, type(standard))
            self.assertIn(hashed, AddressSet([ipaddress.ip_network(text)]))
        self.assertLess(hashed_address(ip("10.0.0.1")), ip("10.0.0.2"))
        self.assertNotEqual(hashed_address(ip("10.0.0.1")), ip("10.0.0.2"))

    def test_address_literal(self) -> None:
        """
        An IP-literal host is its own destination; a name needs a lookup.
        """
        self.assertEqual(
            [address_literal(h) for h in ("127.0.0.1", "::1", "example.com")],
            [(ip("127.0.0.1"),), (ip("::1"),), None],
        )

    def test_normalize_host(self) -> None:
        """
        Hosts are lower-cased, lose a trailing dot, and internationalized
        names become A-labels; names that cannot be encoded are kept
        lower-cased.
        """
        self.assertEqual(
            [
                normalize_host(h)
                for h in ("WWW.Example.COM.", "bücher.example", "BÜCHER.example", "a\u200db.x")
            ],
            ["www.example.com", "xn--bcher-kva.example", "xn--bcher-kva.example", "a\u200db.x"],
        )

    def test_normalize_domain(self) -> None:
        """
        Entries keep whether they are suffixes; IPv6 literals are normalized.
        """
        self.assertEqual(
            [normalize_domain(d) for d in (".Example.com", "example.com.", "0::1")],
            [("example.com", True), ("example.com", False), ("::1", False)],
        )

    def test_local_time(self) -> None:
        """
        Local time is taken from a C{datetime} or a C{struct_time}.
        """
        self.assertEqual(
            [
                LocalTime.of(datetime(2024, 6, 2, 13, 5)),
                LocalTime.of(time.struct_time((2024, 6, 3, 0, 1, 0, 0, 155, 0))),
            ],
            [LocalTime(6, 13 * 60 + 5), LocalTime(0, 1)],
        )

    def test_acl_default_matcher(self) -> None:
        """
        An L{Acl} built without a matcher matches nothing.
        """
        self.assertFalse(Acl("x", "src", ()).match(BASE))
