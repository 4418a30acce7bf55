"""
The PAC file squeak generates (squeak.pac, pure): what it offers, what goes
direct, how configured strings and a client's Host are kept from changing
the script, and the script run by a real PAC engine (pypac, on the dukpy
JavaScript interpreter) for URLs in and out of the LAN.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from squeak.access.acl import BUILTIN_ACLS
from squeak.config import ConfigError, ListenAddress, parse_config
from squeak.pac import PacConfig, offered_proxies, pac_script, proxy_name_from_host
from squeak.values import parse_network


def pac_engine(script: str) -> Any:
    """
    The script loaded in pypac's PAC engine (the test extras install it).

    @raise SkipTest: Naming the missing package, when it is not installed.
    """
    try:
        from pypac.parser import PACFile
    except ImportError as error:
        raise SkipTest(f"pypac is not installed (pip install '.[test]'): {error}") from None
    return PACFile(script)


def localnet() -> list[Any]:
    return [parse_network(entry) for entry in BUILTIN_ACLS["localnet"]["src"]]


class OfferedProxiesTests(SynchronousTestCase):
    """
    offered_proxies: the PAC result's entries.
    """

    def test_table(self) -> None:
        """
        Configured proxies in order; by default the own listeners, a
        wildcard one under proxy_host, else the name the file was fetched
        by, else visible_hostname; DIRECT last unless direct = false.
        """
        specific = ListenAddress("10.0.0.1", 3128)
        wildcard = ListenAddress("0.0.0.0", 3129)
        v6 = ListenAddress("fd00::1", 3128)
        cases = [
            (
                "configured, failover order",
                PacConfig(proxies=("PROXY a:3128", "PROXY b:3128")),
                [specific],
                None,
                ["PROXY a:3128", "PROXY b:3128", "DIRECT"],
            ),
            (
                "own listeners",
                PacConfig(),
                [specific, v6],
                None,
                ["PROXY 10.0.0.1:3128", "PROXY [fd00::1]:3128", "DIRECT"],
            ),
            (
                "wildcard under proxy_host",
                PacConfig(proxy_host="proxy.lan"),
                [wildcard],
                "wpad.lan",
                ["PROXY proxy.lan:3129", "DIRECT"],
            ),
            (
                "wildcard under the name fetched by",
                PacConfig(),
                [wildcard],
                "wpad.lan",
                ["PROXY wpad.lan:3129", "DIRECT"],
            ),
            (
                "wildcard under visible_hostname",
                PacConfig(),
                [wildcard],
                None,
                ["PROXY squeak.lan:3129", "DIRECT"],
            ),
            ("no DIRECT", PacConfig(direct=False), [specific], None, ["PROXY 10.0.0.1:3128"]),
        ]
        wrong = []
        for why, pac, listeners, fetched_as, want in cases:
            got = offered_proxies(pac, listeners, fetched_as, "Squeak.lan")
            if got != want:
                wrong.append((why, got, want))
        self.assertEqual(wrong, [])

    def test_proxy_name_from_host(self) -> None:
        """
        Only a plain name or address from Host is used; anything that could
        change the script (quotes, parentheses, spaces) is ignored.
        """
        cases = [
            (b"proxy.lan:3128", "proxy.lan"),
            (b"PROXY.LAN", "proxy.lan"),
            (b"[::1]:3128", "[::1]"),
            (b"10.0.0.1:3128", "10.0.0.1"),
            (b'a");alert(1);//', None),
            (b"a b", None),
            (b"[nope]:1", None),
            (b"\xff", None),
            (b"", None),
            (None, None),
        ]
        wrong = [(value, want) for value, want in cases if proxy_name_from_host(value) != want]
        self.assertEqual(wrong, [])


class PacSectionTests(SynchronousTestCase):
    """
    The [pac] table.
    """

    def test_values_normalised(self) -> None:
        """
        Entries become PAC results, domains lower-case ASCII (IDNA).
        """
        config = parse_config(
            "[pac]\n"
            'proxies = ["a.lan:3128", "https B.lan:3129", "DIRECT"]\n'
            'bypass_domains = [".Example.COM", "*.corp.*", "bücher.de"]\n'
            'bypass_networks = ["192.0.2.0/24"]\n',
            "squeak.toml",
        )
        pac = config.pac
        self.assertEqual(pac.proxies, ("PROXY a.lan:3128", "HTTPS b.lan:3129", "DIRECT"))
        self.assertEqual(pac.bypass_domains, (".example.com", "*.corp.*", "xn--bcher-kva.de"))
        self.assertEqual(pac.bypass_networks, (ipaddress.ip_network("192.0.2.0/24"),))

    def test_errors_name_key_line_and_value(self) -> None:
        """
        Values that could not be written safely into the script, or that
        make no sense, are refused naming the key and its line.
        """
        cases = [
            ('bypass_domains = ["a\\"b.com"]', "pac.bypass_domains", 'got "a\\"b.com"'),
            ('bypass_domains = ["*"]', "pac.bypass_domains", 'got "*"'),
            ('bypass_domains = ["bad domain"]', "pac.bypass_domains", "shell pattern"),
            ('proxies = ["a.lan"]', "pac.proxies", "host:port"),
            ('proxies = ["FTP a:21"]', "pac.proxies", '"HTTPS host:port"'),
            ('proxies = ["a:99999"]', "pac.proxies", "port 1-65535"),
            ('proxy_host = "x\\"y"', "pac.proxy_host", "host name"),
            ('allow = ["CONNECT"]', "pac.allow", "method ACL"),
            ('allow = ["nobody"]', "pac.allow", 'no ACL is named "nobody"'),
            ('bypass_networks = ["10.0.0.1/8"]', "pac.bypass_networks", "10.0.0.1/8"),
        ]
        wrong = []
        for line, key, reason in cases:
            try:
                parse_config(f"[pac]\n{line}\n", "squeak.toml")
                got = "accepted"
            except ConfigError as error:
                got = str(error)
            if not got.startswith(f"squeak.toml:2: {key}: ") or reason not in got:
                wrong.append((line, got))
        self.assertEqual(wrong, [])


#: (URL, the result wanted) for the default file of a proxy on 10.0.0.1:3128
#: with bypass domains, checked by a real PAC engine.
_DEFAULT_CASES = [
    ("http://www.example.org/", "PROXY 10.0.0.1:3128; DIRECT"),
    ("https://www.example.org/login", "PROXY 10.0.0.1:3128; DIRECT"),
    ("http://8.8.8.8/", "PROXY 10.0.0.1:3128; DIRECT"),
    ("http://[2001:4860::8888]/", "PROXY 10.0.0.1:3128; DIRECT"),
    ("http://notcorp.example/", "PROXY 10.0.0.1:3128; DIRECT"),
    ("http://10.1.2.3/", "DIRECT"),
    ("http://192.168.1.20:8080/x", "DIRECT"),
    ("http://172.16.5.5/", "DIRECT"),
    ("http://127.0.0.1:631/", "DIRECT"),
    ("http://[::1]/", "DIRECT"),
    ("http://[fd12::5]/", "DIRECT"),
    ("http://intranet/", "DIRECT"),
    ("http://localhost:8080/", "DIRECT"),
    ("http://wiki.corp.example/", "DIRECT"),
    ("http://corp.example/", "DIRECT"),
    ("http://build.lab.test/", "DIRECT"),
    ("http://printer.lan/", "DIRECT"),
    ("http://printer.lan.example.org/", "PROXY 10.0.0.1:3128; DIRECT"),
    ("http://xn--bcher-kva.de/", "DIRECT"),
    ("http://192.0.2.99/", "DIRECT"),
    ("http://198.51.100.1/", "PROXY 10.0.0.1:3128; DIRECT"),
]


class PacEngineTests(SynchronousTestCase):
    """
    The generated script, evaluated by pypac.
    """

    def _script(self, **settings: Any) -> str:
        pac = PacConfig(
            bypass_domains=(".corp.example", "*.lab.*", "printer.lan", "xn--bcher-kva.de"),
            bypass_networks=(ipaddress.ip_network("192.0.2.0/24"),),
            **settings,
        )
        entries = offered_proxies(pac, [ListenAddress("10.0.0.1", 3128)], None, "squeak.lan")
        return pac_script(
            entries,
            bypass_domains=pac.bypass_domains,
            bypass_networks=[*pac.bypass_networks, *localnet()],
            resolve_hosts=pac.resolve_hosts,
            source="squeak.toml",
        )

    def test_urls_in_and_out_of_the_lan(self) -> None:
        """
        LAN addresses (localnet's, IPv4 and IPv6), loopback, plain names,
        localhost and the bypass domains go direct; everything else through
        the proxy, then direct if it does not answer.
        """
        engine = pac_engine(self._script())
        wrong = []
        for url, want in _DEFAULT_CASES:
            host = urlsplit(url).hostname or ""
            for given in {host, f"[{host}]" if ":" in host else host}:
                got = engine.find_proxy_for_url(url, given)
                if got != want:
                    wrong.append((url, given, got, want))
        self.assertEqual(wrong, [])

    def test_failover_order_and_no_direct(self) -> None:
        """
        Configured proxies are returned in order; without DIRECT a browser
        never bypasses them (loopback aside).
        """
        pac = PacConfig(proxies=("PROXY a.lan:3128", "PROXY b.lan:3128"), direct=False)
        entries = offered_proxies(pac, [], None, "squeak.lan")
        engine = pac_engine(pac_script(entries))
        self.assertEqual(
            engine.find_proxy_for_url("http://example.org/", "example.org"),
            "PROXY a.lan:3128; PROXY b.lan:3128",
        )
        self.assertEqual(engine.find_proxy_for_url("http://127.0.0.1/", "127.0.0.1"), "DIRECT")

    def test_names_are_not_resolved_unless_asked(self) -> None:
        """
        Without resolve_hosts, the networks are tested on addresses only: no
        isInNet call reaches a host name (a browser would wait for DNS).
        With it, isInNet is called on names too.
        """
        plain = self._script()
        self.assertIn("/^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$/.test(h)", plain)
        resolving = self._script(resolve_hosts=True)
        self.assertNotIn(".test(h)", resolving)
        self.assertIn('isInNet(h, "10.0.0.0", "255.0.0.0")', resolving)

    def test_strings_are_quoted_even_if_unchecked(self) -> None:
        """
        Every string goes into the script as a JavaScript literal: a pattern
        with a quote (which the [pac] parser refuses anyway) stays one
        string and cannot end the script's own.
        """
        script = pac_script(["PROXY a:1", "DIRECT"], bypass_domains=['x"); return "DIRECT'])
        self.assertIn('h == "x\\"); return \\"DIRECT"', script)
        engine = pac_engine(script)
        self.assertEqual(
            engine.find_proxy_for_url("http://o.test/", "o.test"), "PROXY a:1; DIRECT"
        )
