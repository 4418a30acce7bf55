"""
Micro-benchmark of access-rule evaluation (issue 4): 20 rules, 10,000 C{src}
CIDRs and 100,000 C{dstdomain} entries.

Prints the time to compile the ACLs and rules once, then the per-request
cost of L{squeak.access.rules.evaluate} for a few kinds of request, each the
median of several runs of many evaluations. Run it with::

    .venv/bin/python bench/acl_bench.py [--runs 7] [--evaluations 100000]

No figure is asserted anywhere; docs/performance.md quotes the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import random
import statistics
import sys
import time
from collections.abc import Callable

from squeak.access.acl import Facts, LocalTime, compile_acls
from squeak.access.rules import Action, compile_policy, evaluate

#: 20 rules exercising every cheap kind, both big sets, and the defaults.
RULES = [
    "deny !Safe_ports",
    "deny CONNECT !SSL_ports",
    "deny to_localhost !localhost",
    "deny blocked_domains",
    "deny banned_clients",
    "deny too_many",
    "deny bad_agents",
    "deny executables",
    "deny ads_urls",
    "deny night !admins",
    "deny post uploads_host",
    "deny purge",
    "deny lan_only_ports !localnet",
    "deny private_dst !localnet",
    "deny weekend guests",
    "allow admins",
    "allow localnet office_hours",
    "allow clients web_ports",
    "allow clients CONNECT SSL_ports",
    "deny all",
]


def build_acls(rng: random.Random) -> dict[str, object]:
    """The C{[acl]} table: 10,000 random /24../32 CIDRs, 100,000 domains."""
    clients = sorted(
        {
            str(ipaddress.IPv4Network((rng.getrandbits(32), prefix), strict=False))
            for prefix in (rng.choice((16, 20, 24, 28, 32)) for _ in range(10_000))
        }
    )
    while len(clients) < 10_000:  # collisions are rare; top up to the round figure
        clients.append(f"198.18.{len(clients) % 256}.{len(clients) // 256 % 256}/32")
    domains = [
        ("." if i % 2 else "") + f"d{i}-{rng.getrandbits(24):06x}.example{i % 97}.com"
        for i in range(100_000)
    ]
    return {
        "blocked_domains": {"dstdomain": domains},
        "clients": {"src": clients},
        "banned_clients": {"src": ["203.0.113.0/24", "198.51.100.7"]},
        "too_many": {"maxconn": 64},
        "bad_agents": {"browser": ["(?i)sqlmap|nikto|masscan"]},
        "executables": {"urlpath_regex": [r"\.(exe|msi|scr)$"], "case_insensitive": True},
        "ads_urls": {"url_regex": [r"^https?://[^/]*adserver\.", r"/pagead/"]},
        "night": {"time": "00:00-05:00"},
        "admins": {"src": ["10.0.0.0/29"]},
        "uploads_host": {"dstdomain": [".uploads.example"]},
        "purge": {"method": ["PURGE"]},
        "post": {"method": ["POST"]},
        "lan_only_ports": {"port": ["8000-8999"]},
        "private_dst": {"dst": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]},
        "weekend": {"time": "SA"},
        "guests": {"src": ["192.168.99.0/24"]},
        "office_hours": {"time": "MTWHF 08:00-18:00"},
        "web_ports": {"port": [80, 443, "8080"]},
    }


def measure(call: Callable[[], object], evaluations: int, runs: int) -> float:
    """The median over C{runs} of the mean time of one call, in microseconds."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(evaluations):
            call()
        samples.append((time.perf_counter() - start) / evaluations * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    """Build the policy, time the scenarios, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--evaluations", type=int, default=100_000)
    args = parser.parse_args(argv)
    rng = random.Random(4)
    table = build_acls(rng)
    start = time.perf_counter()
    acls = compile_acls(table, "/")
    policy = compile_policy(acls, RULES, [], authentication=False)
    compile_seconds = time.perf_counter() - start
    client = next(
        ipaddress.ip_network(c).network_address
        for c in table["clients"]["src"]  # type: ignore[index]
        if not ipaddress.ip_network(c).is_private
    )
    base = Facts(
        client_ip=client,
        method="GET",
        scheme="http",
        host="www.news.example.org",
        port=80,
        url="http://www.news.example.org/world/article-12345.html?ref=home",
        path="/world/article-12345.html?ref=home",
        now_local=LocalTime(2, 14 * 60),
        dst_addresses=(ipaddress.ip_address("93.184.216.34"),),
        user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        client_connections=3,
    )
    blocked_host = "www." + table["blocked_domains"]["dstdomain"][1].lstrip(".")  # type: ignore[index]
    scenarios = {
        "client in 10k CIDRs, allowed by rule 18 (all 20 rules tried)": base,
        "host under one of 100k dstdomain suffixes, denied by rule 4": dataclasses.replace(
            base, host=blocked_host
        ),
        "client outside every list, denied by rule 20": dataclasses.replace(
            base, client_ip=ipaddress.ip_address("8.8.4.4")
        ),
        "port 22, denied by rule 1": dataclasses.replace(base, port=22),
        "destination not resolved yet (returns NEED_DST at rule 3)": dataclasses.replace(
            base, dst_addresses=None
        ),
    }
    print(
        f"squeak ACL micro-benchmark: {len(RULES)} rules, "
        f"{len(table['clients']['src'])} src CIDRs, "  # type: ignore[index]
        f"{len(table['blocked_domains']['dstdomain'])} dstdomain entries "  # type: ignore[index]
        f"(Python {sys.version.split()[0]})"
    )
    print(f"compile ACLs and rules once: {compile_seconds * 1000:.0f} ms")
    print(f"median of {args.runs} runs x {args.evaluations} evaluations, per request:")
    rules = policy.http_access
    for label, facts in scenarios.items():
        verdict = evaluate(rules, facts)
        cost = measure(lambda facts=facts: evaluate(rules, facts), args.evaluations, args.runs)
        print(f"  {cost:6.2f} us  {verdict.action.value:<9} {label}")
        expected = {
            "client in": Action.ALLOW,
            "host under": Action.DENY,
            "client outside": Action.DENY,
            "port 22": Action.DENY,
            "destination": Action.NEED_DST,
        }
        if verdict.action is not next(v for k, v in expected.items() if label.startswith(k)):
            print(f"unexpected verdict for {label!r}: {verdict}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
