# -*- test-case-name: tests.test_pac -*-
"""
Proxy auto-config (PAC) files: the C{[pac]} table and the script built
from it.

A browser told where a PAC file is (by hand, by DHCP option 252 or by DNS
WPAD: docs/pac.md) fetches it once and runs its C{FindProxyForURL(url,
host)} for every request, which answers C{"PROXY a:3128; PROXY b:3128;
DIRECT"}: the proxies to try in order, the next one when one does not
answer.  squeak serves one on its proxy port (L{squeak.proxy.pac}); this
module decides what it says, as text, and nothing else:

  - which proxies it offers: C{[pac] proxies}, or by default this proxy's
    own C{http_port} listeners (a wildcard listener offered under
    C{[pac] proxy_host}, or the name the client used to fetch the file);
  - which destinations go direct: plain host names, C{localhost} and
    loopback, the C{localnet} ACL's networks, C{bypass_domains} and
    C{bypass_networks};
  - the JavaScript, with every configured string validated and quoted, so
    that neither a configuration value nor a client's C{Host} can change
    the script's meaning.

Pure: no Twisted, no clock, no network.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from squeak.config_values import (
    InvalidValueError,
    ListenAddress,
    _boolean,
    _network_list,
    _readable_file,
    _setting,
    _show,
    _strings,
)
from squeak.values import IPNetwork
from squeak.values import quote as _quote

__all__ = [
    "PAC_CONTENT_TYPE",
    "PAC_PATHS",
    "PacConfig",
    "offered_proxies",
    "pac_problem",
    "pac_script",
    "proxy_name_from_host",
]

#: Where browsers look for the file: the conventional name, and the one
#: WPAD fetches (C{http://wpad.<domain>/wpad.dat}).
PAC_PATHS = (b"/proxy.pac", b"/wpad.dat")

#: The media type browsers expect for a PAC file.
PAC_CONTENT_TYPE = b"application/x-ns-proxy-autoconfig"

#: A host name as a PAC file may name it: letters, digits, hyphens and dots.
_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")

#: A bypass domain: a host name, a C{.suffix}, or a shell pattern of
#: C{shExpMatch} (C{*} and C{?}).  Anything else (quotes, spaces, slashes)
#: is refused rather than escaped: none of it can be part of a host.
_DOMAIN_PATTERN = re.compile(r"\.?[a-z0-9*?_][a-z0-9.*?_-]{0,252}")

#: How a C{proxies} entry may start; a bare C{host:port} means C{PROXY}.
_PROXY_KINDS = ("PROXY", "HTTPS", "SOCKS", "SOCKS4", "SOCKS5")

#: Loopback, never worth a proxy (and refused by squeak's own
#: C{to_localhost} rule anyway).
_LOOPBACK: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def _proxy_entry(text: str) -> str:
    """
    One C{proxies} entry in the form a PAC result takes: C{"a:3128"} and
    C{"PROXY a:3128"} become C{"PROXY a:3128"}; C{"HTTPS a:3129"} (a TLS
    proxy port), C{"SOCKS5 s:1080"} and C{"DIRECT"} are kept.

    @raise InvalidValueError: If it is not such an entry.
    """
    words = text.split()
    if words == ["DIRECT"]:
        return "DIRECT"
    if len(words) == 1:
        words = ["PROXY", *words]
    if len(words) != 2 or words[0].upper() not in _PROXY_KINDS:
        raise InvalidValueError(
            f'expected "host:port", "PROXY host:port", "HTTPS host:port" or "DIRECT", '
            f"got {_quote(text)}",
            element=text,
        )
    kind, authority = words[0].upper(), words[1]
    host, colon, port = authority.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            host = ""
    elif not _HOST_NAME.fullmatch(host.lower()):
        host = ""
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidValueError(
            f"expected host:port (a name or address, then a port 1-65535) in {_quote(text)}",
            element=text,
        )
    return f"{kind} {host.lower()}:{int(port)}"


def _proxy_entries(value: object, base_dir: str) -> tuple[str, ...]:
    return tuple(_proxy_entry(item) for item in _strings(value, '["proxy1.lan:3128"]'))


def _domain_patterns(value: object, base_dir: str) -> tuple[str, ...]:
    """
    Bypass domains, lower-cased, internationalised names in their ASCII
    (IDNA) form as browsers hand them to C{FindProxyForURL}.
    """
    patterns = []
    for item in _strings(value, '[".example.com", "intranet.lan"]'):
        text = item.strip().lower()
        dot = "." if text.startswith(".") else ""
        try:
            ascii_form = dot + text[len(dot) :].encode("idna").decode("ascii")
        except UnicodeError:
            ascii_form = ""
        if not _DOMAIN_PATTERN.fullmatch(ascii_form) or ascii_form.strip(".*") == "":
            raise InvalidValueError(
                'expected a host name, a ".suffix" or a shell pattern like "*.corp.*", '
                f"got {_quote(item)}",
                element=item,
            )
        patterns.append(ascii_form)
    return tuple(patterns)


def _bypass_networks(value: object, base_dir: str) -> tuple[IPNetwork, ...]:
    return _network_list(value, '["192.0.2.0/24"]', None)


def _proxy_host(value: object, base_dir: str) -> str:
    if not isinstance(value, str) or (value and not _HOST_NAME.fullmatch(value.lower())):
        raise InvalidValueError(f'expected a host name like "proxy.lan" or "", got {_show(value)}')
    return value.lower()


def _acl_names(value: object, base_dir: str) -> tuple[str, ...]:
    return tuple(_strings(value, '["localnet"]'))


@dataclass(frozen=True, slots=True)
class PacConfig:
    """
    The C{[pac]} table: the proxy auto-config file served at C{/proxy.pac}
    and C{/wpad.dat} on the proxy port (docs/pac.md).

    @ivar enabled: Whether the file is served at all.
    @ivar file: A PAC file to serve as it is, or C{""} to generate one.
    @ivar proxies: The proxies offered, in order, as PAC results
        (C{"PROXY a:3128"}); empty for this proxy's own listeners.
    @ivar direct: Whether C{DIRECT} follows them (when every proxy is down).
    @ivar proxy_host: The name offered for a wildcard listener; C{""} for
        the name the client fetched the file by.
    @ivar bypass_domains: Host names, C{.suffix}es and shell patterns sent
        direct.
    @ivar bypass_networks: More networks whose addresses are sent direct.
    @ivar bypass_localnet: Whether the C{localnet} ACL's networks go direct.
    @ivar resolve_hosts: Whether the script resolves host names to test the
        networks (C{isInNet} on a name); by default only addresses written
        in the URL are tested, so a browser never waits for DNS to decide.
    @ivar allow: The C{src} ACLs whose clients may fetch the file.
    """

    enabled: bool = _setting(
        default=True,
        kind="boolean",
        doc="Whether the proxy port serves a PAC file at /proxy.pac and /wpad.dat.",
        parse=_boolean,
    )
    file: str = _setting(
        default="",
        kind="path",
        doc='A PAC file served as it is (read again when it changes); "" generates one '
        "from the keys below.",
        parse=_readable_file,
    )
    proxies: tuple[str, ...] = _setting(
        default=(),
        default_doc="this proxy's own http_port addresses",
        kind="array of strings",
        doc='The proxies offered, tried in order: "host:port" (PROXY), "HTTPS host:port" '
        "(a TLS proxy port).",
        parse=_proxy_entries,
    )
    direct: bool = _setting(
        default=True,
        kind="boolean",
        doc="Whether DIRECT follows the proxies, so browsers go direct when none answers.",
        parse=_boolean,
    )
    proxy_host: str = _setting(
        default="",
        kind="string",
        doc='The name offered for a wildcard listener (0.0.0.0 or ::); "" uses the name '
        "the client fetched the file by.",
        parse=_proxy_host,
    )
    bypass_domains: tuple[str, ...] = _setting(
        default=(),
        kind="array of strings",
        doc='Destinations sent direct: "host.name", ".suffix" (the domain and its '
        'subdomains) or a shell pattern like "*.corp.*".',
        parse=_domain_patterns,
    )
    bypass_networks: tuple[IPNetwork, ...] = _setting(
        default=(),
        kind="array of networks",
        doc="More networks (CIDR) whose addresses are sent direct; loopback always is.",
        parse=_bypass_networks,
    )
    bypass_localnet: bool = _setting(
        default=True,
        kind="boolean",
        doc="Whether the localnet ACL's networks are sent direct.",
        parse=_boolean,
    )
    resolve_hosts: bool = _setting(
        default=False,
        kind="boolean",
        doc="Whether the script resolves host names to test the bypass networks; by default "
        "only addresses written in the URL are tested.",
        parse=_boolean,
    )
    allow: tuple[str, ...] = _setting(
        default=("localnet",),
        kind="array of ACL names",
        doc="The src ACLs whose clients may fetch the file; others get 403.",
        parse=_acl_names,
    )


def pac_problem(pac: PacConfig, acl_kinds: dict[str, str]) -> tuple[str, str, str] | None:
    """
    What is wrong with C{pac} once the ACLs are known, if anything.

    @param acl_kinds: Every ACL's kind by name.
    @return: L{None}, or the key, the array element at fault and the
        problem (the loader turns it into a C{ConfigError}).
    """
    for name in pac.allow:
        kind = acl_kinds.get(name)
        if kind is None:
            return "allow", name, f"no ACL is named {_quote(name)}"
        if kind != "src":
            return (
                "allow",
                name,
                f"{_quote(name)} is a {kind} ACL; only src ACLs (client addresses) can decide "
                "who fetches the PAC file",
            )
    return None


def proxy_name_from_host(host_field: bytes | None) -> str | None:
    """
    The proxy's name as the client wrote it in C{Host} (without the port),
    if it is a plain host name or address: it goes into the script, so
    anything else is ignored.
    """
    if not host_field:
        return None
    try:
        text = host_field.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    if text.startswith("["):
        inside, bracket, _ = text[1:].partition("]")
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            return None
        return f"[{inside}]" if bracket else None
    name = text.rpartition(":")[0] if ":" in text else text
    return name if _HOST_NAME.fullmatch(name) else None


def offered_proxies(
    pac: PacConfig,
    listeners: Sequence[ListenAddress],
    fetched_as: str | None,
    visible_hostname: str,
) -> list[str]:
    """
    The PAC result's entries, in order: C{[pac] proxies}, or this proxy's
    own listeners, then C{DIRECT} unless C{[pac] direct} is false.

    A wildcard listener (C{0.0.0.0}, C{::}) has no address a browser could
    use: it is offered as C{[pac] proxy_host}, else as the name the client
    fetched the file by (C{fetched_as}, from C{Host}: the name that reached
    this proxy from that client's network), else as C{visible_hostname}.
    """
    entries = list(pac.proxies)
    if not entries:
        for listener in listeners:
            host = listener.host
            if ipaddress.ip_address(host).is_unspecified:
                name = pac.proxy_host or fetched_as or visible_hostname.lower()
            else:
                name = f"[{host}]" if ":" in host else host
            entry = f"PROXY {name}:{listener.port}"
            if entry not in entries:
                entries.append(entry)
    if pac.direct and "DIRECT" not in entries:
        entries.append("DIRECT")
    return entries


def _js(text: str) -> str:
    """A JavaScript string literal (JSON's is one) of C{text}."""
    return json.dumps(text)


def _domain_test(pattern: str) -> str:
    """
    The C{FindProxyForURL} test for one bypass domain, on the lower-cased
    host C{h}: C{.suffix} is the domain and its subdomains (as Squid's
    C{dstdomain}), a pattern with C{*} or C{?} is C{shExpMatch}, any other
    name is that host only.
    """
    if "*" in pattern or "?" in pattern:
        return f"shExpMatch(h, {_js(pattern)})"
    if pattern.startswith("."):
        return f"dnsDomainIs(h, {_js(pattern)}) || h == {_js(pattern[1:])}"
    return f"h == {_js(pattern)}"


def pac_script(
    entries: Sequence[str],
    *,
    bypass_domains: Iterable[str] = (),
    bypass_networks: Iterable[IPNetwork] = (),
    resolve_hosts: bool = False,
    source: str = "",
) -> str:
    """
    The PAC file: C{FindProxyForURL} returning C{entries} joined by C{"; "}
    except for the destinations that go direct.

    Plain host names (no dot) and C{localhost} go direct, so do the bypass
    domains and the addresses of the bypass networks (loopback always).
    IPv4 networks are tested with C{isInNet}: on addresses written in the
    URL only, unless C{resolve_hosts} (then a name is resolved by the
    browser, which may wait for DNS).  IPv6 networks are tested with
    C{isInNetEx} where the browser has it (Chrome, Edge), and IPv6
    loopback everywhere.

    @param entries: The result's entries, validated (L{offered_proxies}).
    @param bypass_domains: Validated patterns (the C{[pac]} parser's).
    @param source: Where the settings came from, for a comment.
    """
    result = "; ".join(entries) or "DIRECT"
    networks = list(_LOOPBACK)
    networks += [n for n in bypass_networks if n not in networks]
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    lines = [
        "// Proxy auto-config generated by squeak" + (f" from {source}" if source else "") + ".",
        "// docs/pac.md explains the [pac] settings behind it.",
        "function FindProxyForURL(url, host) {",
        "    var h = host.toLowerCase();",
        '    if (h.charAt(0) == "[") h = h.substring(1, h.length - 1);',
        # An IPv6 literal has no dot either: not a plain host name.
        '    if (isPlainHostName(h) && h.indexOf(":") < 0) return "DIRECT";',
        '    if (h == "localhost" || dnsDomainIs(h, ".localhost")) return "DIRECT";',
    ]
    for pattern in bypass_domains:
        lines.append(f'    if ({_domain_test(pattern)}) return "DIRECT";')
    if v4:
        literal = "/^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$/.test(h)"
        guard = "true" if resolve_hosts else literal
        lines.append(f"    if ({guard}) {{")
        for network in v4:
            lines.append(
                f"        if (isInNet(h, {_js(str(network.network_address))}, "
                f'{_js(str(network.netmask))})) return "DIRECT";'
            )
        lines.append("    }")
    lines.append('    if (h.indexOf(":") >= 0) {')
    lines.append('        if (h == "::1") return "DIRECT";')
    lines.append('        if (typeof isInNetEx == "function") {')
    for network6 in v6:
        lines.append(f'            if (isInNetEx(h, {_js(str(network6))})) return "DIRECT";')
    lines.append("        }")
    lines.append("    }")
    lines.append(f"    return {_js(result)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
