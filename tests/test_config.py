# -*- test-case-name: tests.test_config -*-
"""
Tests for L{squeak.config}: units, addresses, the schema, and the one-line
errors an operator sees.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squeak.access.acl import builtin_acls, compile_acl
from squeak.access.rules import DEFAULT_HTTP_ACCESS, Action, compile_policy, default_policy
from squeak.config import (
    ACL_TABLE,
    TABLES,
    AccessConfig,
    AccessLogConfig,
    AuthConfig,
    CacheConfig,
    Config,
    ConfigError,
    LimitsConfig,
    ListenAddress,
    ProxyConfig,
    TimeoutsConfig,
    UpstreamConfig,
    default_cache_dir,
    load_config,
    parse_config,
    parse_duration,
    parse_listen_address,
    parse_network,
    parse_size,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "etc", "squeak.toml")
DOCS = os.path.join(ROOT, "docs", "configuration.md")
ETC = os.path.join(ROOT, "etc")

SIZES = [  # (why, text, bytes)
    ("plain number is bytes", "512", 512),
    ("zero", "0", 0),
    ("B suffix", "512B", 512),
    ("bytes word", "2 bytes", 2),
    ("KiB is binary (IEC)", "4 KiB", 4096),
    ("KB is decimal (SI)", "4 KB", 4000),
    ("units are case-insensitive", "4 kib", 4096),
    ("SI lower-case k", "4kB", 4000),
    ("fractional MiB", "1.5 MiB", 1572864),
    ("MB", "3 MB", 3_000_000),
    ("GiB", "1 GiB", 1024**3),
    ("GB", "2 GB", 2_000_000_000),
    ("TiB", "1 TiB", 1024**4),
    ("TB", "1 TB", 10**12),
    ("fraction of a byte rounds down", "0.1 KiB", 102),
    ("leading fraction point", ".5 KiB", 512),
    ("surrounding spaces", "  64 KiB  ", 65536),
]

BAD_SIZES = [  # (why, text, message)
    ("no number", "KiB", 'expected a size like "512 KiB" or "4 MB", got "KiB"'),
    ("unknown unit", "4 XB", 'expected a size like "512 KiB" or "4 MB", got "4 XB"'),
    ("negative", "-1", 'expected a size like "512 KiB" or "4 MB", got "-1"'),
    ("empty", "", 'expected a size like "512 KiB" or "4 MB", got ""'),
    ("exponent", "1e3", 'expected a size like "512 KiB" or "4 MB", got "1e3"'),
    ("two numbers", "1 2", 'expected a size like "512 KiB" or "4 MB", got "1 2"'),
    (
        "beyond 64 bits",
        "9999999999 TiB",
        'size too large (at most 2**63 - 1 bytes), got "9999999999 TiB"',
    ),
]

DURATIONS = [  # (why, text, seconds)
    ("plain number is seconds", "90", 90.0),
    ("seconds", "30s", 30.0),
    ("sec", "30 sec", 30.0),
    ("milliseconds", "500ms", 0.5),
    ("minutes", "2min", 120.0),
    ("minutes word", "2 minutes", 120.0),
    ("hours", "1h", 3600.0),
    ("days", "1d", 86400.0),
    ("fractional", "1.5s", 1.5),
    ("case-insensitive", "2MIN", 120.0),
    ("zero is a duration (fields require more)", "0", 0.0),
]

BAD_DURATIONS = [  # (why, text, message)
    ("letters", "abc", 'expected a duration like "30s" or "2min", got "abc"'),
    ("m is ambiguous", "5m", 'expected a duration like "30s" or "2min", got "5m"'),
    ("negative", "-1s", 'expected a duration like "30s" or "2min", got "-1s"'),
    ("empty", "", 'expected a duration like "30s" or "2min", got ""'),
    ("compound", "1h30min", 'expected a duration like "30s" or "2min", got "1h30min"'),
    ("too large", "9" * 400, "duration too large, got " + '"' + "9" * 57 + '..."'),
]

LISTEN = [  # (why, text, address)
    ("IPv4", "127.0.0.1:3128", ListenAddress("127.0.0.1", 3128)),
    ("all IPv4 addresses", "0.0.0.0:3128", ListenAddress("0.0.0.0", 3128)),
    ("ephemeral port", "127.0.0.1:0", ListenAddress("127.0.0.1", 0)),
    ("highest port", "127.0.0.1:65535", ListenAddress("127.0.0.1", 65535)),
    ("IPv6 in brackets, stored without", "[::1]:3128", ListenAddress("::1", 3128)),
    ("IPv6 is normalized", "[0:0::0001]:8080", ListenAddress("::1", 8080)),
]

BAD_LISTEN = [  # (why, text, message)
    (
        "host names are refused, saying why",
        "localhost:3128",
        'expected a literal IP address, not the host name "localhost" (a name is looked up '
        'once at start-up and may resolve elsewhere later); write e.g. "127.0.0.1:3128" or '
        '"[::1]:3128"',
    ),
    (
        "port out of range",
        "127.0.0.1:65536",
        'expected a port 0-65535 after the colon, got "127.0.0.1:65536"',
    ),
    (
        "port not a number",
        "127.0.0.1:http",
        'expected a port 0-65535 after the colon, got "127.0.0.1:http"',
    ),
    (
        "port missing",
        "127.0.0.1",
        'expected an address like "127.0.0.1:3128" or "[::1]:3128" (the port is required), '
        'got "127.0.0.1"',
    ),
    ("empty port", "127.0.0.1:", 'expected a port 0-65535 after the colon, got "127.0.0.1:"'),
    (
        "IPv6 without brackets",
        "::1:3128",
        'IPv6 addresses need brackets, like "[::1]:3128", got "::1:3128"',
    ),
    (
        "IPv4 in brackets",
        "[127.0.0.1]:3128",
        'expected an IPv6 address inside the brackets, got "[127.0.0.1]:3128"',
    ),
    (
        "brackets without port",
        "[::1]",
        'expected an address like "127.0.0.1:3128" or "[::1]:3128", got "[::1]"',
    ),
    (
        "bad IPv4",
        "300.1.1.1:80",
        'expected an address like "127.0.0.1:3128" or "[::1]:3128", got "300.1.1.1:80"',
    ),
    ("no host", ":3128", 'expected an address like "127.0.0.1:3128" or "[::1]:3128", got ":3128"'),
]

P = "etc/squeak.toml"

#: Strings some key accepts, so that generated documents are often valid.
PLAUSIBLE = ["30s", "4 KiB", "127.0.0.1:0", "[::1]:0", "10.0.0.0/8", "on", "squid", "-", "x"]

ERRORS = [  # (why, TOML text, the whole line shown to the operator)
    (
        "a syntax error reuses tomllib's text and its line",
        "[proxy]\nvia true\n",
        f"{P}:2: invalid TOML: Expected '=' after a key in a key/value pair (at line 2, column 5)",
    ),
    (
        "a syntax error with no line has none",
        "a = ",
        f"{P}: invalid TOML: Invalid value (at end of document)",
    ),
    (
        "an unknown table suggests the closest",
        "[proxy]\n\n[cachee]\ndir = 'x'\n",
        f"{P}:3: cachee: unknown table (did you mean cache?)",
    ),
    (
        "an unknown table with nothing close lists them all",
        "[zzz]\n",
        f"{P}:1: zzz: unknown table (expected one of proxy, tls, intercept, timeouts, limits, "
        "upstream, acl, access, auth, access_log, cache, pac, proxy_protocol, errors, "
        "manager, metrics, cache_peer, hierarchy)",
    ),
    (
        "a client network covering every address would open the proxy",
        '[cache]\npurge_from = ["::/0"]\n',
        f'{P}:2: cache.purge_from: "::/0" would make an open proxy (list only the '
        "networks of your own clients)",
    ),
    (
        "a bypass network that is not one",
        '[pac]\nbypass_networks = ["nope"]\n',
        f'{P}:2: pac.bypass_networks: expected an IP network like "192.168.0.0/16" or '
        '"::1/128", got "nope"',
    ),
    (
        "an unknown key suggests the closest",
        "[upstream]\n# note\nmax_idle_per_hots = 3\n",
        f"{P}:3: upstream.max_idle_per_hots: unknown key (did you mean max_idle_per_host?)",
    ),
    (
        "an unknown key with nothing close lists the table's keys",
        "[timeouts]\nfoo = 1\n",
        f"{P}:2: timeouts.foo: unknown key (expected one of connect, read, client_idle, "
        "request_head, server_idle, tunnel_idle, shutdown_lifetime)",
    ),
    (
        "a sub-table is an unknown key of its table",
        "[proxy]\n[proxy.extra]\na = 1\n",
        f"{P}:2: proxy.extra: unknown key (expected one of http_port, visible_hostname, "
        "forwarded_for, via, upgrade_protocols, workers, reuseport, user, group, worker_header)",
    ),
    (
        "a key outside any table says which table it belongs in",
        "http_port = ['127.0.0.1:3128']\n",
        f"{P}:1: http_port: keys belong in a table (did you mean [proxy] http_port?)",
    ),
    (
        "a table name used as a key",
        "proxy = 1\n",
        f"{P}:1: proxy: expected a table [proxy], got 1",
    ),
    (
        "a duration that is not one",
        "[proxy]\nvia = true\n\n[timeouts]\n\n\n\n\n\n\n\nconnect = 'abc'\n",
        f'{P}:12: timeouts.connect: expected a duration like "30s" or "2min", got "abc"',
    ),
    (
        "a zero timeout",
        "[timeouts]\nread = '0s'\n",
        f'{P}:2: timeouts.read: must be longer than zero, got "0s"',
    ),
    (
        "a negative timeout as a number",
        "[timeouts]\nread = -1\n",
        f'{P}:2: timeouts.read: expected a duration like "30s" or "2min", got -1',
    ),
    (
        "an infinite timeout",
        "[timeouts]\nread = inf\n",
        f'{P}:2: timeouts.read: expected a duration like "30s" or "2min", got inf',
    ),
    (
        "a boolean is not a duration",
        "[timeouts]\nread = true\n",
        f'{P}:2: timeouts.read: expected a duration like "30s" or "2min", got true',
    ),
    (
        "a size that is not one",
        "[limits]\nrequest_body_size = 'lots'\n",
        f'{P}:2: limits.request_body_size: expected a size like "512 KiB" or "4 MB", got "lots"',
    ),
    (
        "a float is not a size",
        "[limits]\nrequest_body_size = 1.5\n",
        f'{P}:2: limits.request_body_size: expected a size like "512 KiB" or "4 MB", got 1.5',
    ),
    (
        "a zero header size",
        "[limits]\nrequest_header_size = 0\n",
        f"{P}:2: limits.request_header_size: must be at least 1 byte, got 0",
    ),
    (
        "a boolean is not an integer",
        "[limits]\nrequest_headers = true\n",
        f"{P}:2: limits.request_headers: expected an integer, got true",
    ),
    (
        "a string is not an integer",
        "[limits]\nrequest_headers = '100'\n",
        f'{P}:2: limits.request_headers: expected an integer, got "100"',
    ),
    (
        "an integer below its minimum",
        "[upstream]\nmax_idle_per_host = -1\n",
        f"{P}:2: upstream.max_idle_per_host: expected an integer of at least 0, got -1",
    ),
    (
        "a string is not a boolean",
        "[proxy]\nvia = 'yes'\n",
        f'{P}:2: proxy.via: expected true or false, got "yes"',
    ),
    (
        "an enum lists the allowed values",
        "[proxy]\nforwarded_for = 'yes'\n",
        f'{P}:2: proxy.forwarded_for: expected one of "on", "off", "delete", "transparent", '
        'got "yes"',
    ),
    (
        "the access log format lists the allowed values",
        "[access_log]\nformat = 'apache'\n",
        f'{P}:2: access_log.format: expected one of "squid", "common", "combined", '
        '"referrer", "useragent" or a format string with %codes, got "apache"',
    ),
    (
        "a custom access log format with a code squeak does not record names the code",
        "[access_log]\nformat = '%ts %dt %ru'\n",
        f'{P}:2: access_log.format: unknown or unsupported format code: "%dt" at column 5',
    ),
    (
        "a header the access record does not carry is refused by name",
        "[access_log]\nformat = '%>a %{Cookie}>h'\n",
        f"{P}:2: access_log.format: squeak records only the Referer and User-Agent header "
        'here: "%{Cookie}>h" at column 5',
    ),
    (
        "an unknown syslog facility",
        "[access_log]\nsyslog_facility = 'local9.info'\n",
        f"{P}:2: access_log.syslog_facility: unknown syslog facility 'local9' "
        "(expected e.g. local4, daemon, user)",
    ),
    (
        "an unknown syslog priority",
        "[access_log]\nsyslog_facility = 'daemon.loud'\n",
        f"{P}:2: access_log.syslog_facility: unknown syslog priority 'loud' "
        "(expected e.g. info, notice, debug)",
    ),
    (
        "a syslog tag with a space",
        "[access_log]\nsyslog_tag = 'my proxy'\n",
        f"{P}:2: access_log.syslog_tag: expected 1 to 32 letters, digits, _ . or -, "
        'got "my proxy"',
    ),
    (
        "no listen address",
        "[proxy]\nhttp_port = []\n",
        f'{P}:2: proxy.http_port: must list at least one address, like ["127.0.0.1:3128"]',
    ),
    (
        "a listen address on its own line of a multi-line array",
        '[proxy]\nhttp_port = [\n  "127.0.0.1:3128",\n  "127.0.0.1:99999",\n]\n',
        f'{P}:4: proxy.http_port: expected a port 0-65535 after the colon, got "127.0.0.1:99999"',
    ),
    (
        "a host name as a listen address",
        '[proxy]\nhttp_port = ["localhost:3128"]\n',
        f"{P}:2: proxy.http_port: expected a literal IP address, not the host name "
        '"localhost" (a name is looked up once at start-up and may resolve elsewhere '
        'later); write e.g. "127.0.0.1:3128" or "[::1]:3128"',
    ),
    (
        "a listen address twice",
        '[proxy]\nhttp_port = ["[::1]:3128", "[0::1]:3128"]\n',
        f'{P}:2: proxy.http_port: "[0::1]:3128" is listed twice',
    ),
    (
        "an array of numbers for listen addresses",
        "[proxy]\nhttp_port = [3128]\n",
        f'{P}:2: proxy.http_port: expected an array of strings like ["127.0.0.1:3128"], '
        "got an array containing an integer",
    ),
    (
        "a bad visible hostname",
        "[proxy]\nvisible_hostname = 'my proxy'\n",
        f'{P}:2: proxy.visible_hostname: expected a host name like "proxy.example.net", '
        'got "my proxy"',
    ),
    (
        "a network with host bits set says so, on the element's line",
        '[acl]\nlan = { src = [\n  "127.0.0.0/8",\n  "10.0.0.1/8",\n] }\n',
        f'{P}:4: acl.lan: "10.0.0.1/8" has host bits set (did you mean "10.0.0.0/8"?)',
    ),
    (
        "a network that is not one",
        "[acl]\nlan = { src = ['lan'] }\n",
        f'{P}:2: acl.lan: expected an IP network like "192.168.0.0/16" or "::1/128", got "lan"',
    ),
    (
        "an ACL as a sub-table",
        "[acl.lan]\nsrc = ['x']\n",
        f'{P}:1: acl.lan: expected an IP network like "192.168.0.0/16" or "::1/128", got "x"',
    ),
    (
        "an ACL with two types",
        "[acl]\nx = { src = ['10.0.0.0/8'], port = [80] }\n",
        f"{P}:2: acl.x: an ACL has exactly one type, got port and src",
    ),
    (
        "an unknown ACL type suggests the closest",
        "[acl]\nx = { dst_domain = ['a.example'] }\n",
        f'{P}:2: acl.x: unknown ACL type or option "dst_domain" (did you mean dstdomain?)',
    ),
    (
        "all cannot be redefined",
        "[acl]\nall = { src = ['10.0.0.0/8'] }\n",
        f"{P}:2: acl.all: all is built in (every client) and cannot be redefined",
    ),
    (
        "a bad regex",
        "[acl]\nx = { url_regex = ['a(b'] }\n",
        f'{P}:2: acl.x: invalid regular expression "a(b": missing ), unterminated subpattern '
        "at position 1",
    ),
    (
        "an ACL that is not a table",
        "[acl]\nx = 'src 10.0.0.0/8'\n",
        f'{P}:2: acl.x: expected a table like {{ src = ["10.0.0.0/8"] }}, got "src 10.0.0.0/8"',
    ),
    (
        "acl is a table",
        "acl = 1\n",
        f"{P}:1: acl: expected a table [acl], got 1",
    ),
    (
        "a missing entry file",
        "[acl]\nx = { dstdomain_file = 'nonexistent-list.txt' }\n",
        f'{P}:2: acl.x: cannot read "nonexistent-list.txt": No such file or directory',
    ),
    (
        "a rule naming an unknown ACL suggests the closest, on the rule's line",
        '[access]\nhttp_access = [\n  "deny !Safe_ports",\n  "allow lcalnet",\n]\n',
        f'{P}:4: access.http_access: rule "allow lcalnet" names an unknown ACL "lcalnet" '
        "(did you mean localnet?)",
    ),
    (
        "a rule naming an ACL defined after it",
        '[access]\nhttp_access = ["allow lan"]\n[acl]\nlan = { src = ["10.1.0.0/16"] }\n',
        "no error",
    ),
    (
        "a rule that is not allow or deny",
        "[access]\nhttp_access = ['permit localnet']\n",
        f'{P}:2: access.http_access: expected a rule like "allow localnet" (allow or deny, '
        'then ACL names), got "permit localnet"',
    ),
    (
        "a cache rule naming an unknown ACL",
        "[access]\ncache = ['deny nocache']\n",
        f'{P}:2: access.cache: rule "deny nocache" names an unknown ACL "nocache"',
    ),
    (
        "allow all would make an open proxy",
        "[access]\nhttp_access = ['deny !Safe_ports', 'allow all']\n",
        f'{P}:2: access.http_access: rule "allow all" would make an open proxy: it allows '
        "clients from any address (add a src ACL such as localnet, or a proxy_auth ACL, to "
        'it, or put "deny !localnet" before it)',
    ),
    (
        "an allow rule on ports only would make an open proxy",
        "[access]\nhttp_access = ['allow CONNECT SSL_ports']\n",
        f'{P}:2: access.http_access: rule "allow CONNECT SSL_ports" would make an open '
        "proxy: it allows clients from any address (add a src ACL such as localnet, or a "
        'proxy_auth ACL, to it, or put "deny !localnet" before it)',
    ),
    (
        "a src ACL covering all of IPv4 does not restrict clients",
        "[acl]\nlocalnet = { src = ['0.0.0.0/0'] }\n",
        f'{P}: access.http_access: rule "allow localnet" would make an open proxy: it '
        "allows clients from any address (add a src ACL such as localnet, or a proxy_auth "
        'ACL, to it, or put "deny !localnet" before it)',
    ),
    (
        "allow all after deny !localnet is not open",
        "[access]\nhttp_access = ['deny !localnet', 'allow all']\n",
        "no error",
    ),
    (
        "proxy_auth needs an htpasswd file",
        '[acl]\nstaff = { proxy_auth = "REQUIRED" }\n'
        '[access]\nhttp_access = ["allow localnet staff"]\n',
        f'{P}:4: access.http_access: rule "allow localnet staff" uses the proxy_auth ACL '
        "staff, but [auth] htpasswd is not set",
    ),
    (
        "an htpasswd file that cannot be read",
        "[auth]\nhtpasswd = '/nonexistent/htpasswd'\n",
        f'{P}:2: auth.htpasswd: cannot read "/nonexistent/htpasswd": No such file or directory',
    ),
    (
        "a realm with a quote",
        "[auth]\nrealm = 'my \"proxy\"'\n",
        f"{P}:2: auth.realm: expected up to 100 printable ASCII characters without '\"' or "
        '\'\\\', got "my \\"proxy\\""',
    ),
    (
        "a zero credentials TTL",
        "[auth]\ncredentials_ttl = '0s'\n",
        f'{P}:2: auth.credentials_ttl: must be longer than zero, got "0s"',
    ),
    (
        "an empty cache directory",
        "[cache]\ndir = ''\n",
        f'{P}:2: cache.dir: expected a directory path, got ""',
    ),
    (
        "a NUL in a path",
        '[access_log]\npath = "a\\u0000b"\n',
        f'{P}:2: access_log.path: a path cannot contain a NUL character, got "a\\u0000b"',
    ),
    (
        "a dotted key at the top level is found",
        "timeouts.connect = 'x'\n",
        f'{P}:1: timeouts.connect: expected a duration like "30s" or "2min", got "x"',
    ),
    (
        "an inline table has no line for its keys",
        "timeouts = { connect = 'x' }\n",
        f'{P}: timeouts.connect: expected a duration like "30s" or "2min", got "x"',
    ),
    (
        "a control character in a value is escaped to keep one line",
        '[proxy]\nforwarded_for = "o\\nn"\n',
        f'{P}:2: proxy.forwarded_for: expected one of "on", "off", "delete", "transparent", '
        'got "o\\u000An"',
    ),
    (
        "the first problem in document order is reported",
        "[limits]\nrequest_headers = 0\n[proxy]\nvia = 1\n",
        f"{P}:2: limits.request_headers: expected an integer of at least 1, got 0",
    ),
]


def _mismatches(
    cases: Sequence[tuple[str, Any, object]], function: Callable[[Any], object]
) -> list[tuple[str, object, object, object]]:
    """
    Apply C{function} to each row's input; return the rows whose result or
    C{ValueError} message differs from the expected one.
    """
    wrong = []
    for why, given_, want in cases:
        try:
            got: object = function(given_)
        except ValueError as e:
            got = str(e)
        if got != want:
            wrong.append((why, given_, got, want))
    return wrong


class SizeTests(SynchronousTestCase):
    """
    Tests for L{parse_size}.
    """

    def test_sizes(self) -> None:
        """
        Each row parses to its number of bytes: IEC units are binary, SI units
        decimal.
        """
        self.assertEqual(_mismatches(SIZES, parse_size), [])

    def test_bad_sizes(self) -> None:
        """
        Each malformed row raises C{ValueError} saying what was expected and
        what was found.
        """
        self.assertEqual(_mismatches(BAD_SIZES, parse_size), [])

    @given(
        st.integers(min_value=0, max_value=10**9),
        st.sampled_from([("", 1), ("B", 1), ("KiB", 1024), ("MiB", 1024**2), ("KB", 1000)]),
        st.sampled_from(["", " ", "  "]),
    )
    def test_whole_numbers_scale_by_unit(self, n: int, unit: tuple[str, int], space: str) -> None:
        """
        A whole number with a unit is that many units' worth of bytes,
        whatever the spacing.
        """
        self.assertEqual(parse_size(f"{n}{space}{unit[0]}"), n * unit[1])


class DurationTests(SynchronousTestCase):
    """
    Tests for L{parse_duration}.
    """

    def test_durations(self) -> None:
        """
        Each row parses to its number of seconds; a plain number is seconds.
        """
        self.assertEqual(_mismatches(DURATIONS, parse_duration), [])

    def test_bad_durations(self) -> None:
        """
        Each malformed row raises C{ValueError} saying what was expected and
        what was found.
        """
        self.assertEqual(_mismatches(BAD_DURATIONS, parse_duration), [])

    @given(st.integers(min_value=0, max_value=10**7))
    def test_units_agree(self, n: int) -> None:
        """
        C{n} minutes, C{60n} seconds and C{60000n} milliseconds are the same
        duration.
        """
        self.assertEqual(parse_duration(f"{n}min"), parse_duration(f"{60 * n}s"))
        self.assertAlmostEqual(parse_duration(f"{60000 * n}ms"), 60.0 * n)


class ListenAddressTests(SynchronousTestCase):
    """
    Tests for L{parse_listen_address} and L{ListenAddress}.
    """

    def test_addresses(self) -> None:
        """
        Each row parses to its address; IPv6 is stored normalized and without
        brackets.
        """
        self.assertEqual(_mismatches(LISTEN, parse_listen_address), [])

    def test_bad_addresses(self) -> None:
        """
        Each malformed row raises C{ValueError} saying what is wrong.
        """
        self.assertEqual(_mismatches(BAD_LISTEN, parse_listen_address), [])

    def test_str(self) -> None:
        """
        C{str()} writes IPv4 as C{host:port} and IPv6 in brackets.
        """
        self.assertEqual(
            [str(ListenAddress("127.0.0.1", 3128)), str(ListenAddress("::1", 3128))],
            ["127.0.0.1:3128", "[::1]:3128"],
        )

    @given(st.ip_addresses(), st.integers(min_value=0, max_value=65535))
    def test_round_trip(
        self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
    ) -> None:
        """
        Parsing the C{str()} of an address gives the address back.
        """
        address = ListenAddress(str(ip), port)
        self.assertEqual(parse_listen_address(str(address)), address)


class NetworkTests(SynchronousTestCase):
    """
    Tests for L{parse_network}.
    """

    def test_networks(self) -> None:
        """
        CIDR networks parse; a bare address is a single host.
        """
        cases = [
            ("IPv4 CIDR", "192.168.1.0/24", ipaddress.ip_network("192.168.1.0/24")),
            ("IPv6 CIDR", "fd00::/8", ipaddress.ip_network("fd00::/8")),
            ("bare IPv4", "10.1.2.3", ipaddress.ip_network("10.1.2.3/32")),
            ("bare IPv6", "::1", ipaddress.ip_network("::1/128")),
            (
                "host bits",
                "10.0.0.1/8",
                '"10.0.0.1/8" has host bits set (did you mean "10.0.0.0/8"?)',
            ),
            ("garbage", "x", 'expected an IP network like "192.168.0.0/16" or "::1/128", got "x"'),
        ]
        self.assertEqual(_mismatches(cases, parse_network), [])


class DefaultsTests(SynchronousTestCase):
    """
    Tests for the embedded defaults, C{Config()}.
    """

    def test_safe_defaults(self) -> None:
        """
        The defaults listen on loopback only, apply the default access rules
        without authentication, and log to standard output.
        """
        config = Config()
        self.assertEqual(
            (
                config.proxy.http_port,
                config.access.http_access,
                config.policy.http_access.texts,
                config.auth,
                config.access_log,
                config.source,
            ),
            (
                (ListenAddress("127.0.0.1", 3128),),
                DEFAULT_HTTP_ACCESS,
                DEFAULT_HTTP_ACCESS,
                AuthConfig(htpasswd="", realm="squeak", credentials_ttl=3600.0),
                AccessLogConfig(path="-", format="squid"),
                "<defaults>",
            ),
        )

    def test_contract_defaults(self) -> None:
        """
        The other defaults are those in docs/contracts.md.
        """
        config = Config()
        self.assertEqual(
            (config.timeouts, config.limits, config.upstream, config.proxy.forwarded_for),
            (
                TimeoutsConfig(connect=30.0, read=300.0, client_idle=120.0, server_idle=60.0),
                LimitsConfig(65536, 100, 1024**3),
                UpstreamConfig(max_idle_per_host=32),
                "on",
            ),
        )

    def test_frozen(self) -> None:
        """
        Configuration objects cannot be changed after loading.
        """
        config = Config()
        self.assertRaises(AttributeError, setattr, config.proxy, "via", False)

    def test_default_cache_dir(self) -> None:
        """
        The cache directory is C{$XDG_CACHE_HOME/squeak} when that is
        absolute, else C{~/.cache/squeak}.
        """
        cases = [
            ("XDG set", {"XDG_CACHE_HOME": "/x/cache", "HOME": "/h"}, "/x/cache/squeak"),
            ("XDG unset", {"HOME": "/h"}, "/h/.cache/squeak"),
            ("XDG empty", {"XDG_CACHE_HOME": "", "HOME": "/h"}, "/h/.cache/squeak"),
            (
                "XDG relative is ignored",
                {"XDG_CACHE_HOME": "rel", "HOME": "/h"},
                "/h/.cache/squeak",
            ),
        ]
        self.assertEqual(_mismatches(cases, default_cache_dir), [])

    def test_default_cache_dir_from_environment(self) -> None:
        """
        C{Config()} computes the cache directory from the environment when it
        is built.
        """
        self.patch(os, "environ", {"XDG_CACHE_HOME": "/tmp/xdg"})
        self.assertEqual(Config().cache.dir, "/tmp/xdg/squeak")


class ParseConfigTests(SynchronousTestCase):
    """
    Tests for L{parse_config} with valid input.
    """

    def test_empty(self) -> None:
        """
        An empty file is the defaults, with its path as the source.
        """
        self.assertEqual(parse_config("", P), Config(source=P))

    def test_every_key(self) -> None:
        """
        Every key is read into its ready-to-use form.
        """
        text = """
[proxy]
http_port = ["127.0.0.1:0", "[::1]:8080"]
visible_hostname = "proxy.example.net"
forwarded_for = "delete"
via = false

[timeouts]
connect = "500ms"
read = 10
client_idle = 1.5
server_idle = "2min"

[limits]
request_header_size = "8 KiB"
request_headers = 50
request_body_size = 1000

[upstream]
max_idle_per_host = 0

[acl]
lan = { src = ["192.168.1.0/24", "fd00::/8"] }

[access]
http_access = ["deny !Safe_ports", "allow lan"]
cache = ["deny CONNECT"]

[auth]
realm = "Example proxy"
credentials_ttl = "10min"

[access_log]
path = "/var/log/squeak/access.log"
format = "combined"

[cache]
dir = "/var/cache/squeak"
"""
        expected = Config(
            proxy=ProxyConfig(
                http_port=(ListenAddress("127.0.0.1", 0), ListenAddress("::1", 8080)),
                visible_hostname="proxy.example.net",
                forwarded_for="delete",
                via=False,
            ),
            timeouts=TimeoutsConfig(connect=0.5, read=10.0, client_idle=1.5, server_idle=120.0),
            limits=LimitsConfig(8192, 50, 1000),
            upstream=UpstreamConfig(0),
            access=AccessConfig(("deny !Safe_ports", "allow lan"), ("deny CONNECT",)),
            auth=AuthConfig("", "Example proxy", 600.0),
            access_log=AccessLogConfig("/var/log/squeak/access.log", "combined"),
            cache=CacheConfig("/var/cache/squeak"),
            policy=compile_policy(
                {
                    **builtin_acls(),
                    "lan": compile_acl("lan", {"src": ["192.168.1.0/24", "fd00::/8"]}, "/"),
                },
                ("deny !Safe_ports", "allow lan"),
                ("deny CONNECT",),
                authentication=False,
            ),
            source="/etc/squeak/squeak.toml",
        )
        self.assertEqual(parse_config(text, "/etc/squeak/squeak.toml"), expected)

    def test_single_strings(self) -> None:
        """
        A single string is accepted where an array of addresses or rules is
        expected.
        """
        config = parse_config(
            '[proxy]\nhttp_port = "[::1]:3128"\n[access]\nhttp_access = "allow localhost"\n', P
        )
        self.assertEqual(
            (config.proxy.http_port, config.access.http_access),
            ((ListenAddress("::1", 3128),), ("allow localhost",)),
        )

    def test_empty_http_access(self) -> None:
        """
        An empty C{http_access} is valid and denies everyone: the default
        when no rule matches is deny.
        """
        config = parse_config("[access]\nhttp_access = []\n", P)
        self.assertEqual(
            (config.policy.http_access.rules, config.policy.http_access.default),
            ((), Action.DENY),
        )

    def test_acl_files_relative_to_config(self) -> None:
        """
        An ACL's C{<type>_file} is read relative to the configuration file's
        directory, one entry per line, skipping blank and C{#} lines.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        with open(os.path.join(directory, "blocked.txt"), "w") as f:
            f.write("# ads\n.ads.example\n\ntracker.example\n")
        config = parse_config(
            "[acl]\nblocked = { dstdomain_file = 'blocked.txt', dstdomain = ['x.example'] }\n",
            os.path.join(directory, "squeak.toml"),
        )
        self.assertEqual(
            config.policy.acls["blocked"].entries, ("x.example", ".ads.example", "tracker.example")
        )

    def test_acl_file_errors_name_file_and_line(self) -> None:
        """
        A bad entry in an ACL file is reported with the entry file's name and
        line after the configuration's key.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        with open(os.path.join(directory, "nets.txt"), "w") as f:
            f.write("10.0.0.0/8\n# comment\n10.0.0.1/8\n")
        path = os.path.join(directory, "squeak.toml")
        e = self.assertRaises(
            ConfigError, parse_config, "[acl]\n\nlan = { src_file = 'nets.txt' }\n", path
        )
        self.assertEqual(
            str(e),
            f'{path}:3: acl.lan: nets.txt:3: "10.0.0.1/8" has host bits set '
            '(did you mean "10.0.0.0/8"?)',
        )

    def test_htpasswd_enables_proxy_auth(self) -> None:
        """
        With a readable C{auth.htpasswd}, rules may use C{proxy_auth}; the
        path resolves against the configuration file's directory.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        with open(os.path.join(directory, "users"), "w") as f:
            f.write("")
        config = parse_config(
            "[acl]\nstaff = { proxy_auth = ['alice'] }\n"
            "[access]\nhttp_access = ['allow localnet staff']\n"
            "[auth]\nhtpasswd = 'users'\n",
            os.path.join(directory, "squeak.toml"),
        )
        self.assertEqual(
            (config.auth.htpasswd, config.policy.needs_auth),
            (os.path.join(os.path.abspath(directory), "users"), True),
        )

    def test_relative_paths(self) -> None:
        """
        Relative paths resolve against the configuration file's directory.
        """
        config = parse_config(
            '[access_log]\npath = "log/access.log"\n[cache]\ndir = "../cache"\n',
            "/srv/squeak/etc/squeak.toml",
        )
        self.assertEqual(
            (config.access_log.path, config.cache.dir),
            ("/srv/squeak/etc/log/access.log", "/srv/squeak/cache"),
        )

    def test_relative_config_path(self) -> None:
        """
        A relative configuration path is made absolute before relative paths
        in it are resolved, so they do not depend on a later C{chdir}.
        """
        config = parse_config('[cache]\ndir = "cache"\n', "etc/squeak.toml")
        self.assertEqual(config.cache.dir, os.path.join(os.path.abspath("etc"), "cache"))

    def test_home(self) -> None:
        """
        C{~} in a path is the user's home directory.
        """
        self.patch(os, "environ", {"HOME": "/home/alice"})
        config = parse_config('[cache]\ndir = "~/squeak-cache"\n', "/etc/squeak.toml")
        self.assertEqual(config.cache.dir, "/home/alice/squeak-cache")

    def test_special_log_paths(self) -> None:
        """
        C{"-"} (standard output), C{"syslog"} and C{""} (no log) are kept
        as they are; a file named syslog is written C{"./syslog"}.
        """
        paths = [
            parse_config(f'[access_log]\npath = "{p}"\n', "/etc/squeak.toml").access_log.path
            for p in ("-", "", "syslog", "./syslog")
        ]
        self.assertEqual(paths, ["-", "", "syslog", "/etc/syslog"])

    def test_access_log_formats(self) -> None:
        """
        C{format} takes the presets and Squid logformat strings, and the
        syslog settings take Squid's C{facility.priority} and a tag.
        """
        text = (
            "[access_log]\n"
            "format = '%ts.%03tu %>a %Ss/%03>Hs %ru \"%{User-Agent}>h\"'\n"
            "syslog_facility = 'daemon'\n"
            "syslog_tag = 'proxy-1'\n"
        )
        log = parse_config(text, "/etc/squeak.toml").access_log
        presets = [
            parse_config(f"[access_log]\nformat = '{name}'\n", "s.toml").access_log.format
            for name in ("squid", "common", "combined", "referrer", "useragent")
        ]
        self.assertEqual(
            (log.format, log.syslog_facility, log.syslog_tag, presets),
            (
                '%ts.%03tu %>a %Ss/%03>Hs %ru "%{User-Agent}>h"',
                "daemon",
                "proxy-1",
                ["squid", "common", "combined", "referrer", "useragent"],
            ),
        )


class ErrorTests(SynchronousTestCase):
    """
    Tests for the errors L{parse_config} and L{load_config} raise.
    """

    def test_error_table(self) -> None:
        """
        Each row's problem is reported as one line naming the file, the line
        where it can be found, the key, and what was expected and found.
        """
        wrong = []
        for why, text, want in ERRORS:
            try:
                parse_config(text, P)
            except ConfigError as e:
                got = str(e)
            else:
                got = "no error"
            if got != want:
                wrong.append((why, got, want))
        self.assertEqual(wrong, [])

    def test_attributes(self) -> None:
        """
        A L{ConfigError} keeps the parts of its message apart for callers.
        """
        e = self.assertRaises(ConfigError, parse_config, "[timeouts]\nread = 'x'\n", P)
        self.assertEqual(
            (e.path, e.key, e.problem, e.line),
            (P, "timeouts.read", 'expected a duration like "30s" or "2min", got "x"', 2),
        )

    def test_message_without_key_or_line(self) -> None:
        """
        With no key and no line, the message is the file and the problem.
        """
        self.assertEqual(str(ConfigError("a.toml", None, "broken")), "a.toml: broken")

    def test_missing_file(self) -> None:
        """
        A file that does not exist cannot be read, and the error says so.
        """
        path = self.mktemp()
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}: cannot read: No such file or directory")

    def test_directory(self) -> None:
        """
        A directory is not a configuration file.
        """
        path = self.mktemp()
        os.mkdir(path)
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}: cannot read: Is a directory")

    def test_not_utf8(self) -> None:
        """
        TOML is UTF-8; other encodings are refused with the offset.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"# caf\xe9\n")
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}: cannot read: not UTF-8 (byte 5)")

    def test_load_errors_name_the_file(self) -> None:
        """
        L{load_config} reports problems against the path it was given.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[proxy]\n\nvia = 'no'\n")
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f'{path}:3: proxy.via: expected true or false, got "no"')

    @given(
        st.dictionaries(
            st.sampled_from([*TABLES, ACL_TABLE, "junk"]),
            st.dictionaries(
                st.sampled_from(
                    [f.name for cls in TABLES.values() for f in fields(cls)] + ["junk"]
                ),
                st.one_of(
                    st.booleans(),
                    st.integers(),
                    st.floats(),
                    st.text(max_size=20),
                    st.sampled_from(PLAUSIBLE),
                    st.lists(
                        st.one_of(st.text(max_size=20), st.sampled_from(PLAUSIBLE)), max_size=3
                    ),
                    st.lists(st.integers(), max_size=2),
                ),
            ),
        )
    )
    def test_only_config_errors(self, document: dict[str, dict[str, object]]) -> None:
        """
        Any document parses or raises a L{ConfigError} whose message is one
        line starting with the file name; nothing else escapes.
        """
        text = "".join(
            f"[{table}]\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in keys.items())
            for table, keys in document.items()
        )
        try:
            parse_config(text, P)
        except ConfigError as e:
            self.assertTrue(str(e).startswith(P + ":") or str(e).startswith(P + " "), str(e))
            self.assertNotIn("\n", str(e))
            self.assertNotIn("\r", str(e))


def _toml(value: object) -> str:
    """Write a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + "".join(f"\\U{ord(c):08X}" for c in value) + '"'
    assert isinstance(value, list)
    return "[" + ", ".join(_toml(item) for item in value) + "]"


class SchemaTests(SynchronousTestCase):
    """
    The schema, the documentation and the sample configuration agree.
    """

    def test_config_fields_are_tables(self) -> None:
        """
        C{Config} has one field per entry of C{TABLES}, of that class.
        """
        config = Config()
        self.assertEqual(
            {
                f.name: type(getattr(config, f.name))
                for f in fields(Config)
                # accel, hierarchy: arrays of tables, read by their own modules.
                if f.name not in ("source", "policy", "accel", "hierarchy")
            },
            dict(TABLES),
        )

    def test_metadata(self) -> None:
        """
        Every key carries its documentation, its kind and its parser.
        """
        missing = [
            (table, f.name)
            for table, cls in TABLES.items()
            for f in fields(cls)
            if not (f.metadata.get("doc") and f.metadata.get("kind") and f.metadata.get("parse"))
        ]
        self.assertEqual(missing, [])

    def test_documented(self) -> None:
        """
        Every table and key has its own section in docs/configuration.md.
        """
        with open(DOCS, encoding="utf-8") as source:
            docs = source.read()
        missing = [f"[{table}]" for table in TABLES if f"## `[{table}]`\n" not in docs]
        missing += [
            f"{table}.{f.name}"
            for table, cls in TABLES.items()
            for f in fields(cls)
            if f"### `{table}.{f.name}`\n" not in docs
        ]
        self.assertEqual(missing, [])

    def test_documented_defaults(self) -> None:
        """
        Each C{Default:} written as a TOML value in docs/configuration.md
        parses to the schema's default.
        """
        with open(DOCS, encoding="utf-8") as source:
            docs = source.read()
        wrong = []
        for table, cls in TABLES.items():
            for f in fields(cls):
                if f.metadata["default_doc"] is not None:
                    continue
                section = docs.partition(f"### `{table}.{f.name}`\n")[2].partition("###")[0]
                written = re.search(r"^- Default: `([^`]*)`", section, re.MULTILINE)
                if written is None:
                    wrong.append((table, f.name, "no default written"))
                    continue
                got = getattr(parse_config(f"[{table}]\n{f.name} = {written[1]}\n", DOCS), table)
                if got != cls():
                    wrong.append((table, f.name, written[1]))
        self.assertEqual(wrong, [])

    def test_sample_loads(self) -> None:
        """
        etc/squeak.toml loads as it is, listening on loopback with the
        default access rules and logging to standard output.
        """
        config = load_config(SAMPLE)
        self.assertEqual(
            (config.proxy.http_port, config.policy, config.access_log.path),
            ((ListenAddress("127.0.0.1", 3128),), default_policy(), "-"),
        )

    def test_sample_shows_every_key(self) -> None:
        """
        Uncommenting every C{# key = value} line of etc/squeak.toml gives a
        valid file that sets every key in its own table.
        """
        with open(SAMPLE, encoding="utf-8") as source:
            text = re.sub(r"^# (\w+ = )", r"\1", source.read(), flags=re.MULTILINE)
        parse_config(text, SAMPLE)
        document = tomllib.loads(text)
        missing = [
            f"{table}.{f.name}"
            for table, cls in TABLES.items()
            for f in fields(cls)
            if f.name not in document.get(table, {})
        ]
        self.assertEqual(missing, [])

    def test_sample_comments_show_defaults(self) -> None:
        """
        A key commented out in etc/squeak.toml shows its default value,
        except where the default depends on the machine.
        """
        with open(SAMPLE, encoding="utf-8") as source:
            text = source.read()
        commented = tomllib.loads(
            re.sub(r"^(?!\[|# \w+ = ).*$", "", text, flags=re.MULTILINE).replace("# ", "")
        )
        wrong = []
        for table, keys in commented.items():
            if table == ACL_TABLE:
                continue
            cls = TABLES[table]
            for key, value in keys.items():
                spec = next(f for f in fields(cls) if f.name == key)
                if spec.metadata["default_doc"] is not None:
                    continue
                got = getattr(parse_config(f"[{table}]\n{key} = {_toml(value)}\n", SAMPLE), table)
                if got != cls():
                    wrong.append((table, key, value))
        self.assertEqual(wrong, [])


class InterceptConfigTests(SynchronousTestCase):
    """
    Intercept listeners and the rules that would need credentials from
    clients that cannot give them.
    """

    def test_proxy_auth_with_intercept_listener_is_refused(self) -> None:
        """
        Rules using proxy_auth cannot apply to intercepted clients (they
        never answer 407): the configuration is refused, naming the key.
        """
        htpasswd = os.path.join(os.path.abspath(self.mktemp()))
        with open(htpasswd, "w", encoding="ascii") as handle:
            handle.write("")
        text = (
            '[intercept]\nhttp_port = ["127.0.0.1:3129"]\n'
            f'[auth]\nhtpasswd = "{htpasswd}"\n'
            '[acl]\nusers = { proxy_auth = "REQUIRED" }\n'
            '[access]\nhttp_access = ["allow localnet users", "deny all"]\n'
        )
        with self.assertRaises(ConfigError) as caught:
            parse_config(text, "gateway.toml")
        self.assertTrue(
            str(caught.exception).startswith("gateway.toml:2: intercept.http_port: "),
            str(caught.exception),
        )
        self.assertIn("proxy_auth", str(caught.exception))

    def test_intercept_listeners_without_auth_are_accepted(self) -> None:
        """
        The same listeners with address-based rules load.
        """
        config = parse_config(
            '[intercept]\nhttp_port = ["127.0.0.1:3129"]\nhttps_port = ["127.0.0.1:3130"]\n',
            "gateway.toml",
        )
        self.assertEqual(
            [str(a) for a in config.intercept.http_port + config.intercept.https_port],
            ["127.0.0.1:3129", "127.0.0.1:3130"],
        )
