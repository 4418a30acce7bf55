"""
Real interception in a private network namespace.

Tests call L{missing_prerequisites} (skip with its message when not
L{None}) and L{run_scenario}, which runs this module as a child process in a
new network namespace (C{unshare --net}), so the firewall rules it adds
vanish with the process and touch nothing on the host.  Inside the
namespace (C{python -m tests.netns splice}) the child:

  1. brings C{lo} up;
  2. starts a TLS echo origin on C{127.0.0.2:443} (and C{[fd00::2]:443}
     when IPv6 NAT works) and a L{squeak.net.intercept.SpliceFactory} listener
     on C{127.0.0.1} (C{::1});
  3. adds the rules of docs/transparent.md for locally generated traffic:
     the proxy's own connections are excluded with an owner match (here
     C{--gid-owner 0}, standing in for C{--uid-owner squeak}), and
     connections to the origin's port 443 are C{REDIRECT}ed to the splice
     listener;
  4. runs each client as a subprocess with group id L{CLIENT_GID}, so its
     connections are redirected while the proxy's are not;
  5. prints one JSON object: what each client saw, the splice records, the
     decisions asked for, and the server names the origin saw.

The clients run as root with another group, not as another user, because
the interpreter may live under an unreadable C{/root}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: The group the test clients run with; the proxy runs with group 0.
CLIENT_GID = 4242
ORIGIN_V4 = "127.0.0.2"
ORIGIN_V6 = "fd00::2"
ALLOWED_NAME = "origin.test"
DENIED_NAME = "denied.test"

_missing: list[str | None] = []


def missing_prerequisites() -> str | None:
    """
    Why the namespace tests cannot run here, or L{None} if they can.

    Checks, in order: Linux, root, the C{unshare}, C{ip} and C{iptables}
    binaries, and that a new network namespace gets a usable C{nat} table.
    The answer is computed once per process.
    """
    if not _missing:
        _missing.append(_check())
    return _missing[0]


def _check() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return f"creating a network namespace needs root (euid is {os.geteuid()})"
    absent = [tool for tool in ("unshare", "ip", "iptables") if shutil.which(tool) is None]
    if absent:
        return (
            f"{', '.join(absent)} not found on PATH (bash .ci/setup-netns installs "
            "util-linux, iproute2 and iptables)"
        )
    probe = subprocess.run(
        ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && iptables -t nat -L -n"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        detail = (probe.stderr or probe.stdout).strip().splitlines()
        return (
            "`unshare --net` + `iptables -t nat -L` failed "
            f"(rc={probe.returncode}): {detail[-1] if detail else 'no output'}"
        )
    return None


def run_scenario(name: str, timeout: float = 90) -> dict[str, Any]:
    """
    Run C{python -m tests.netns NAME} in a new network namespace and
    return the JSON object it prints.

    @raise AssertionError: if the child fails, with its stderr.
    """
    result = subprocess.run(
        ["unshare", "--net", "--", sys.executable, "-m", "tests.netns", name],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if result.returncode != 0:
        raise AssertionError(
            f"namespace scenario {name} failed (rc={result.returncode}):\n{result.stderr}"
        )
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise AssertionError(f"namespace scenario {name} printed nothing:\n{result.stderr}")
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


#: A stand-in for the gateway of docs/transparent.md: a LAN interface
#: C{eth1} (one end of a veth pair) with the addresses the recipe uses.
GATEWAY_SETUP = """
set -e
ip link set lo up
ip link add eth1 type veth peer name eth1-peer
ip link set eth1 up
ip addr add 192.168.1.1/24 dev eth1
ip -6 addr add 2001:db8:1::1/64 dev eth1 nodad
"""


def run_shell(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """
    Run a shell script in a new, throw-away network namespace.
    """
    return subprocess.run(
        ["unshare", "--net", "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30)


def _must(*argv: str) -> None:
    done = _run(*argv)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


def _redirect_rules(tool: str, origin: str, proxy_port: int) -> list[list[str]]:
    """
    The OUTPUT-chain rules of docs/transparent.md (section "Also
    intercepting the gateway's own traffic").
    """
    exclude = "-m owner --gid-owner 0 -j RETURN"
    redirect = f"-d {origin} --dport 443 -j REDIRECT --to-ports {proxy_port}"
    return [
        [tool, "-t", "nat", "-A", "OUTPUT", "-p", "tcp", *exclude.split()],
        [tool, "-t", "nat", "-A", "OUTPUT", "-p", "tcp", *redirect.split()],
    ]


# The client, run in its own process with group CLIENT_GID.


def _client(args: argparse.Namespace) -> None:
    """
    Connect to C{args.host:args.port}; for C{tls}, do a verified TLS
    handshake and an echo; for C{garbage}, send plain HTTP.  Print JSON.
    """
    out: dict[str, Any] = {"ok": False, "echo": None, "error": None, "received": ""}
    try:
        with socket.create_connection((args.host, args.port), timeout=10) as raw:
            if args.mode == "http":
                # args.sni carries the Host value here.
                raw.sendall(
                    f"GET /page HTTP/1.1\r\nHost: {args.sni}\r\nConnection: close\r\n\r\n".encode()
                )
                data = b""
                while chunk := raw.recv(65536):
                    data += chunk
                out["received"] = data.decode("latin-1")
                out["ok"] = True
            elif args.mode == "garbage":
                raw.sendall(b"GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n")
                got = raw.recv(4096)
                out["received"] = got.decode("latin-1")
                out["ok"] = True
            else:
                context = ssl.create_default_context(cafile=args.ca)
                if not args.sni:
                    context.check_hostname = False
                with context.wrap_socket(raw, server_hostname=args.sni or None) as tls:
                    tls.sendall(b"ping through the splice")
                    out["echo"] = tls.recv(4096).decode("latin-1")
                    out["ok"] = True
    except (OSError, ssl.SSLError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))


def _run_client(mode: str, host: str, port: int, sni: str, ca: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.netns", "client", mode, host, str(port), sni, ca],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        group=CLIENT_GID,
        extra_groups=[],
    )
    if done.returncode != 0 or not done.stdout.strip():
        return {"ok": False, "error": f"client crashed: {done.stderr.strip()[-500:]}"}
    parsed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return parsed


# The scenario, run as root in the namespace.


def _add_origin_v6() -> str:
    """
    Give the namespace's loopback the IPv6 origin address.

    @return: C{"untried"} when it worked (the scenario goes on to try its
        IPv6 case), else why IPv6 is skipped.
    """
    done = _run("ip", "-6", "addr", "add", f"{ORIGIN_V6}/128", "dev", "lo", "nodad")
    if done.returncode != 0:
        return f"skipped: ip -6 addr add failed: {done.stderr.strip()}"
    return "untried"


def _splice_scenario() -> None:
    from twisted.internet import defer, protocol, reactor, task, threads
    from twisted.internet.ssl import CertificateOptions, KeyPair, PrivateCertificate

    from squeak.net.intercept import SpliceFactory, SpliceRecord
    from tests.tlsfixtures import make_server_files

    _must("ip", "link", "set", "lo", "up")
    ipv6 = _add_origin_v6()

    workdir = Path(tempfile.mkdtemp(prefix="squeak-netns-"))
    files = make_server_files(workdir, [ALLOWED_NAME, ORIGIN_V4, ORIGIN_V6])
    key = KeyPair.load(files.key.read_bytes(), 1)
    cert = PrivateCertificate.load(files.certificate.read_bytes(), key, 1)
    options = CertificateOptions(privateKey=key.original, certificate=cert.original)

    origin_seen: list[dict[str, Any]] = []

    class Echo(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            name = self.transport.getHandle().get_servername()  # type: ignore[union-attr]
            local = self.transport.getHost()  # type: ignore[union-attr]
            origin_seen.append(
                {"servername": name.decode() if name else None, "local": local.host}
            )
            self.transport.write(b"echo:" + data)  # type: ignore[union-attr]

    origin = protocol.ServerFactory.forProtocol(Echo)
    reactor.listenSSL(443, origin, options, interface=ORIGIN_V4)

    records: list[SpliceRecord] = []
    decisions: list[list[Any]] = []

    def decide(sni: str | None, dst: tuple[str, int], client: tuple[str, int]) -> Any:
        decisions.append([sni, list(dst), client[0]])
        allowed = sni == ALLOWED_NAME or (sni is None and dst[0] in (ORIGIN_V4, ORIGIN_V6))
        # Answer asynchronously, as an ACL check with a DNS lookup would.
        return task.deferLater(reactor, 0.01, lambda: allowed)

    factory = SpliceFactory(reactor, decide, records.append, hello_timeout=5.0)
    splice_port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port
    for rule in _redirect_rules("iptables", ORIGIN_V4, splice_port):
        _must(*rule)

    splice6_port = None
    if ipv6 == "untried":
        try:
            reactor.listenSSL(443, origin, options, interface=ORIGIN_V6)
            splice6_port = reactor.listenTCP(0, factory, interface="::1").getHost().port
            for rule in _redirect_rules("ip6tables", ORIGIN_V6, splice6_port):
                _must(*rule)
            ipv6 = "ok"
        except Exception as e:
            ipv6 = f"skipped: {e}"
            splice6_port = None

    def wait_for_records(count: int) -> None:
        deadline = time.monotonic() + 10
        while len(records) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def clients() -> dict[str, Any]:
        ca = str(files.ca)
        cases: list[tuple[str, str, str, int, str]] = [
            ("allowed", "tls", ORIGIN_V4, 443, ALLOWED_NAME),
            ("no_sni", "tls", ORIGIN_V4, 443, ""),
            ("denied", "tls", ORIGIN_V4, 443, DENIED_NAME),
            ("garbage", "garbage", ORIGIN_V4, 443, ""),
            ("direct", "tls", "127.0.0.1", splice_port, ALLOWED_NAME),
        ]
        if splice6_port is not None:
            cases.append(("ipv6", "tls", ORIGIN_V6, 443, ALLOWED_NAME))
        seen: dict[str, Any] = {}
        for label, mode, host, port, sni in cases:
            before = len(records)
            seen[label] = _run_client(mode, host, port, sni, ca)
            wait_for_records(before + 1)
            seen[label]["records"] = [_jsonable(asdict(r)) for r in records[before:]]
        return seen

    result: dict[str, Any] = {}

    def report(seen: Any) -> None:
        result.update(
            clients=seen,
            decisions=decisions,
            origin=origin_seen,
            ipv6=ipv6,
            splice_port=splice_port,
            nat=_run("iptables", "-t", "nat", "-S", "OUTPUT").stdout,
        )

    def failed(failure: Any) -> None:
        result["error"] = failure.getTraceback()

    d: defer.Deferred[Any] = threads.deferToThread(clients)
    d.addCallbacks(report, failed)
    d.addBoth(lambda _: reactor.stop())
    threading.Timer(60, lambda: reactor.callFromThread(reactor.stop)).start()
    reactor.run()
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # the watchdog timer thread must not keep the process alive


def _squeak_scenario() -> None:
    """
    The whole proxy as a gateway runs it: squeak's service with
    [intercept] listeners, an HTTP origin on 127.0.0.2:80 and a TLS echo
    origin on 127.0.0.2:443, both reached only through REDIRECT rules.
    """
    from twisted.internet import protocol, reactor, threads
    from twisted.internet.ssl import CertificateOptions, KeyPair, PrivateCertificate
    from twisted.web import resource, server

    from squeak.config import parse_config
    from squeak.service import build_service
    from tests.tlsfixtures import make_server_files

    _must("ip", "link", "set", "lo", "up")
    workdir = Path(tempfile.mkdtemp(prefix="squeak-netns-"))
    files = make_server_files(workdir / "tls", [ALLOWED_NAME, DENIED_NAME, ORIGIN_V4])
    counts: dict[str, int] = {}
    hosts_seen: list[str] = []
    counts_v6: dict[str, int] = {}
    hosts_seen_v6: list[str] = []

    class Page(resource.Resource):
        isLeaf = True

        def __init__(self, counts: dict[str, int], hosts: list[str]) -> None:
            super().__init__()
            self.counts, self.hosts = counts, hosts

        def render_GET(self, request: Any) -> bytes:
            path = request.path.decode()
            self.counts[path] = self.counts.get(path, 0) + 1
            self.hosts.append((request.getHeader(b"host") or b"").decode())
            request.setHeader(b"cache-control", b"max-age=60")
            return b"origin answer %d" % self.counts[path]

    site = server.Site(Page(counts, hosts_seen))
    reactor.listenTCP(80, site, interface=ORIGIN_V4)
    # The same origin over IPv6, reached through ip6tables when it works.
    ipv6 = _add_origin_v6()
    if ipv6 == "untried":
        reactor.listenTCP(80, server.Site(Page(counts_v6, hosts_seen_v6)), interface=ORIGIN_V6)
    key = KeyPair.load(files.key.read_bytes(), 1)
    cert = PrivateCertificate.load(files.certificate.read_bytes(), key, 1)
    options = CertificateOptions(privateKey=key.original, certificate=cert.original)

    class Echo(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(b"echo:" + data)  # type: ignore[union-attr]

    reactor.listenSSL(443, protocol.ServerFactory.forProtocol(Echo), options, interface=ORIGIN_V4)
    log = workdir / "access.log"
    config = parse_config(
        f"""
[proxy]
http_port = ["127.0.0.1:3128"]
visible_hostname = "gateway.test"
[intercept]
http_port = ["127.0.0.1:3129", "[::1]:3131"]
https_port = ["127.0.0.1:3130"]
[acl]
blocked = {{ dstdomain = ["{DENIED_NAME}"] }}
[access]
http_access = ["deny blocked", "deny !Safe_ports", "allow localnet", "deny all"]
[access_log]
path = "{log}"
[cache]
dir = "{workdir / "cache"}"
""",
        str(workdir / "squeak.toml"),
    )
    service = build_service(config, reactor)
    service.startService()
    exclude = ["-m", "owner", "--gid-owner", "0", "-j", "RETURN"]
    _must("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", *exclude)
    for port, to in ((80, 3129), (443, 3130)):
        _must(
            "iptables",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            ORIGIN_V4,
            "--dport",
            str(port),
            "-j",
            "REDIRECT",
            "--to-ports",
            str(to),
        )
    if ipv6 == "untried":
        redirect6 = ["ip6tables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp"]
        done = [
            _run(*redirect6, *exclude),
            _run(
                *redirect6,
                "-d",
                ORIGIN_V6,
                "--dport",
                "80",
                "-j",
                "REDIRECT",
                "--to-ports",
                "3131",
            ),
        ]
        failed6 = [d.stderr.strip() for d in done if d.returncode != 0]
        ipv6 = f"skipped: ip6tables failed: {failed6}" if failed6 else "ok"

    def clients() -> dict[str, Any]:
        ca = str(files.ca)
        seen = {
            "first": _run_client("http", ORIGIN_V4, 80, ORIGIN_V4, ca),
            "second": _run_client("http", ORIGIN_V4, 80, ORIGIN_V4, ca),
            "forged1": _run_client("http", ORIGIN_V4, 80, "forged.invalid", ca),
            "forged2": _run_client("http", ORIGIN_V4, 80, "forged.invalid", ca),
            "tls_allowed": _run_client("tls", ORIGIN_V4, 443, ALLOWED_NAME, ca),
            "tls_denied": _run_client("tls", ORIGIN_V4, 443, DENIED_NAME, ca),
        }
        if ipv6 == "ok":
            host6 = f"[{ORIGIN_V6}]"
            seen["v6_first"] = _run_client("http", ORIGIN_V6, 80, host6, ca)
            seen["v6_second"] = _run_client("http", ORIGIN_V6, 80, host6, ca)
        # Straight to the intercept port, no redirection: refused, no loop.
        with socket.create_connection(("127.0.0.1", 3129), timeout=10) as raw:
            raw.sendall(b"GET /page HTTP/1.1\r\nHost: 127.0.0.1:3129\r\n\r\n")
            seen["direct"] = raw.recv(65536).decode("latin-1")
        time.sleep(0.3)
        return seen

    result: dict[str, Any] = {}

    def report(seen: Any) -> None:
        result.update(
            clients=seen,
            counts=counts,
            hosts=hosts_seen,
            ipv6=ipv6,
            counts_v6=counts_v6,
            hosts_v6=hosts_seen_v6,
        )

    def failed(failure: Any) -> None:
        result["error"] = failure.getTraceback()

    d = threads.deferToThread(clients)
    d.addCallbacks(report, failed)
    d.addBoth(lambda _: service.stopService())
    d.addBoth(lambda _: reactor.stop())
    threading.Timer(60, lambda: reactor.callFromThread(reactor.stop)).start()
    reactor.run()
    result["access_log"] = log.read_text() if log.exists() else ""
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "value"):  # an enum
        return value.value
    return value


def main(argv: list[str]) -> None:
    """
    C{splice}: the whole scenario (must run in a fresh namespace);
    C{client MODE HOST PORT SNI CA}: one client.
    """
    parser = argparse.ArgumentParser(prog="python -m tests.netns")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("splice")
    sub.add_parser("squeak")
    client = sub.add_parser("client")
    client.add_argument("mode", choices=["tls", "garbage", "http"])
    client.add_argument("host")
    client.add_argument("port", type=int)
    client.add_argument("sni")
    client.add_argument("ca")
    args = parser.parse_args(argv)
    if args.command == "client":
        _client(args)
    elif args.command == "squeak":
        _squeak_scenario()
    else:
        _splice_scenario()


if __name__ == "__main__":
    main(sys.argv[1:])
