# -*- test-case-name: tests.test_access_rules -*-
"""
Tests for L{squeak.access.rules}: rule parsing, first-match evaluation with
AND and negation, the explicit defaults, lazy destination and credentials,
the cache rules, and the checks that refuse an open proxy.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from squeak.access.acl import Acl, Facts, LocalTime, compile_acls
from squeak.access.rules import (
    DEFAULT_HTTP_ACCESS,
    AccessPolicy,
    Action,
    RuleError,
    Verdict,
    compile_policy,
    compile_rules,
    default_policy,
    evaluate,
    evaluate_rules,
    may_cache,
    parse_rule,
)

ip = ipaddress.ip_address

#: A LAN client fetching an ordinary page; the destination not looked up.
LAN = Facts(
    client_ip=ip("192.168.1.10"),
    method="GET",
    scheme="http",
    host="www.example.com",
    port=80,
    url="http://www.example.com/",
    path="/",
    now_local=LocalTime(0, 600),
)

ACLS = compile_acls(
    {
        "lan": {"src": ["192.168.1.0/24"]},
        "blocked": {"dstdomain": [".ads.example"]},
        "staff": {"proxy_auth": ["alice"]},
        "users": {"proxy_auth": "REQUIRED"},
        "web": {"port": [80, 443]},
        "private_dst": {"dst": ["10.0.0.0/8"]},
    },
    "/",
)


def facts(**changes: Any) -> Facts:
    """L{LAN} with some facts changed."""
    return dataclasses.replace(LAN, **changes)


def resolved(*addresses: str, **changes: Any) -> Facts:
    """L{LAN} with its destination resolved to C{addresses}."""
    return facts(dst_addresses=tuple(ip(a) for a in addresses), **changes)


EVALUATIONS = [  # (why, rules, facts, (action, deciding rule))
    ("first match wins", ["allow lan", "deny lan"], LAN, (Action.ALLOW, "allow lan")),
    ("a later rule is not reached", ["deny lan", "allow lan"], LAN, (Action.DENY, "deny lan")),
    ("no rule matching denies", ["allow localhost"], LAN, (Action.DENY, None)),
    ("no rules at all deny", [], LAN, (Action.DENY, None)),
    (
        "AND: every ACL must match",
        ["allow lan CONNECT", "deny all"],
        LAN,
        (Action.DENY, "deny all"),
    ),
    ("AND: all match", ["allow lan web"], LAN, (Action.ALLOW, "allow lan web")),
    ("negation", ["deny !web", "allow lan"], facts(port=22), (Action.DENY, "deny !web")),
    ("negation not matching", ["deny !web", "allow lan"], LAN, (Action.ALLOW, "allow lan")),
    ("double spaces are normalized", ["allow  lan   web"], LAN, (Action.ALLOW, "allow lan web")),
    (
        "a dst ACL with the destination unknown needs it",
        ["deny private_dst", "allow lan"],
        LAN,
        (Action.NEED_DST, "deny private_dst"),
    ),
    (
        "a dst ACL once resolved",
        ["deny private_dst", "allow lan"],
        resolved("10.1.2.3"),
        (Action.DENY, "deny private_dst"),
    ),
    (
        "a failed lookup matches no dst entry",
        ["deny private_dst", "allow lan"],
        resolved(),
        (Action.ALLOW, "allow lan"),
    ),
    (
        "cheap ACLs first: a non-matching src spares the lookup",
        ["deny private_dst lan", "allow all"],
        facts(client_ip=ip("10.9.9.9")),
        (Action.ALLOW, "allow all"),
    ),
    (
        "an undecided rule is skipped when the rest decide the same",
        ["deny private_dst", "deny all"],
        LAN,
        (Action.DENY, "deny all"),
    ),
    (
        "an undecided rule is needed when the rest decide otherwise",
        ["deny private_dst", "deny localhost", "allow all"],
        LAN,
        (Action.NEED_DST, "deny private_dst"),
    ),
    (
        "two undecided rules disagreeing: the first needs its fact",
        ["deny private_dst", "allow staff", "deny all"],
        LAN,
        (Action.NEED_DST, "deny private_dst"),
    ),
    (
        "proxy_auth without a user asks for credentials",
        ["allow lan staff", "deny all"],
        LAN,
        (Action.AUTH_REQUIRED, "allow lan staff"),
    ),
    (
        "proxy_auth with a listed user",
        ["allow lan staff", "deny all"],
        facts(user="alice"),
        (Action.ALLOW, "allow lan staff"),
    ),
    (
        "proxy_auth with another user does not match",
        ["allow lan staff", "deny all"],
        facts(user="bob"),
        (Action.DENY, "deny all"),
    ),
    (
        "proxy_auth is evaluated last: other ACLs failing spare the challenge",
        ["allow staff localhost", "allow lan"],
        LAN,
        (Action.ALLOW, "allow lan"),
    ),
    (
        "negated proxy_auth without a user asks for credentials too",
        ["deny !users", "allow lan"],
        LAN,
        (Action.AUTH_REQUIRED, "deny !users"),
    ),
    (
        "negated proxy_auth with any user",
        ["deny !users", "allow lan"],
        facts(user="carol"),
        (Action.ALLOW, "allow lan"),
    ),
    (
        "a challenge that cannot change the outcome is not made",
        ["deny !users", "deny all"],
        LAN,
        (Action.DENY, "deny all"),
    ),
    (
        "an allowed request needs no credentials when no rule reached asks",
        ["allow lan", "allow users"],
        LAN,
        (Action.ALLOW, "allow lan"),
    ),
]

DEFAULTS = [  # (why, facts, (action, deciding rule)), for DEFAULT_HTTP_ACCESS
    ("a LAN client to the web", resolved("93.184.216.34"), (Action.ALLOW, "allow localnet")),
    (
        "a LAN client to the web needs the destination first",
        LAN,
        (Action.NEED_DST, "deny to_localhost !localhost"),
    ),
    (
        "a LAN client to the proxy host's loopback",
        resolved("127.0.0.1"),
        (Action.DENY, "deny to_localhost !localhost"),
    ),
    (
        "a LAN client to a name resolving partly to loopback",
        resolved("93.184.216.34", "127.0.0.1"),
        (Action.DENY, "deny to_localhost !localhost"),
    ),
    (
        "a LAN client to 0.0.0.0",
        resolved("0.0.0.0"),
        (Action.DENY, "deny to_localhost !localhost"),
    ),
    (
        "a local client to loopback, without a lookup",
        facts(client_ip=ip("127.0.0.1")),
        (Action.ALLOW, "allow localnet"),
    ),
    (
        "another loopback address is not localhost",
        resolved("127.0.0.1", client_ip=ip("127.0.0.2")),
        (Action.DENY, "deny to_localhost !localhost"),
    ),
    ("port 22", facts(port=22), (Action.DENY, "deny !Safe_ports")),
    (
        "CONNECT to port 22",
        facts(method="CONNECT", scheme="authority", port=22),
        (Action.DENY, "deny !Safe_ports"),
    ),
    (
        "CONNECT to a safe port other than 443",
        facts(method="CONNECT", scheme="authority", port=8080),
        (Action.DENY, "deny CONNECT !SSL_ports"),
    ),
    (
        "CONNECT to 443",
        resolved("93.184.216.34", method="CONNECT", scheme="authority", port=443),
        (Action.ALLOW, "allow localnet"),
    ),
    (
        "an outside client is denied without a lookup",
        facts(client_ip=ip("203.0.113.5")),
        (Action.DENY, "deny all"),
    ),
    (
        "an outside IPv6 client",
        facts(client_ip=ip("2001:db8::5")),
        (Action.DENY, "deny all"),
    ),
]


def _mismatches(
    cases: Sequence[tuple[str, Sequence[str], Facts, tuple[Action, str | None]]],
    acls: Mapping[str, Acl],
) -> list[tuple[str, tuple[Action, str | None], tuple[Action, str | None]]]:
    """Evaluate each row; return the rows whose outcome differs."""
    wrong = []
    for why, texts, given_facts, want in cases:
        verdict = evaluate(compile_rules(texts, acls, Action.DENY), given_facts)
        if (verdict.action, verdict.rule) != want:
            wrong.append((why, (verdict.action, verdict.rule), want))
    return wrong


class EvaluateTests(SynchronousTestCase):
    """
    Tests for L{evaluate}.
    """

    def test_evaluations(self) -> None:
        """
        Each row's rules decide as the row says: first match, AND, negation,
        default deny, and the lazy destination and credentials.
        """
        self.assertEqual(_mismatches(EVALUATIONS, ACLS), [])

    def test_default_rules(self) -> None:
        """
        The default rules refuse unsafe ports, CONNECT but to 443, and LAN
        clients reaching the proxy host's loopback; allow localnet; deny
        the rest.
        """
        cases = [(why, DEFAULT_HTTP_ACCESS, f, want) for why, f, want in DEFAULTS]
        self.assertEqual(_mismatches(cases, default_policy().acls), [])

    def test_reasons(self) -> None:
        """
        A verdict names the rule and its position, what it needs, or the
        default.
        """
        rules = compile_rules(["deny private_dst", "allow lan staff"], ACLS, Action.DENY)
        self.assertEqual(
            [
                evaluate(rules, resolved("10.0.0.1")),
                evaluate(rules, LAN),
                evaluate(rules, resolved("8.8.8.8")),
                evaluate(rules, resolved("8.8.8.8", client_ip=ip("8.8.8.8"))),
            ],
            [
                Verdict(Action.DENY, "deny private_dst", 'rule 1 "deny private_dst" matched'),
                Verdict(
                    Action.NEED_DST,
                    "deny private_dst",
                    'rule 1 "deny private_dst" needs the destination address (private_dst)',
                ),
                Verdict(
                    Action.AUTH_REQUIRED,
                    "allow lan staff",
                    'rule 2 "allow lan staff" needs an authenticated user (staff)',
                ),
                Verdict(Action.DENY, None, "no rule matched (default: deny)"),
            ],
        )

    def test_may_cache(self) -> None:
        """
        C{cache} rules allow storing by default; a matching deny forbids it;
        a rule that cannot be decided forbids it too.
        """
        rules = compile_rules(["deny blocked", "deny staff"], ACLS, Action.ALLOW)
        self.assertEqual(
            [
                may_cache(rules, facts(user="bob")),
                may_cache(rules, facts(host="x.ads.example", user="bob")),
                may_cache(rules, facts(user="alice")),
                may_cache(rules, LAN),
                may_cache(compile_rules([], ACLS, Action.ALLOW), LAN),
            ],
            [True, False, False, False, True],
        )


class VerdictMemoTests(SynchronousTestCase):
    """
    L{evaluate} remembers verdicts per tuple of the facts its rules read;
    the remembered verdict is always the one evaluation gives.
    """

    def test_remembered_verdicts_are_evaluated_ones(self) -> None:
        """
        Facts that differ in every attribute, some in one only, evaluated
        twice each by one compiled rule list per row (so later facts meet
        verdicts remembered for earlier ones), get the verdicts of a fresh
        evaluation, for the rules of every row and the default rules.
        """
        acls = dict(ACLS)
        acls.update(
            compile_acls(
                {
                    "night": {"time": ["MTWHFAS 22:00-23:59"]},
                    "busy": {"maxconn": 2},
                    "https": {"proto": ["https"]},
                },
                "/",
            )
        )
        many = [
            LAN,
            resolved("10.0.0.1"),
            resolved("8.8.8.8"),
            resolved("127.0.0.1", client_ip=ip("127.0.0.1")),
            facts(client_ip=ip("8.8.8.8")),
            facts(method="CONNECT", scheme="authority", port=443),
            facts(port=22),
            facts(host="x.ads.example"),
            facts(user="alice"),
            facts(user="bob"),
            facts(now_local=LocalTime(2, 1350)),
            facts(client_connections=3),
            facts(scheme="https", port=443),
            resolved("10.0.0.1", user="alice", client_connections=5),
        ]
        texts = [rules for _, rules, _, _ in EVALUATIONS] + [
            DEFAULT_HTTP_ACCESS,
            ["deny night", "deny busy", "allow https lan", "allow staff", "deny all"],
        ]
        wrong = []
        for rule_texts in texts:
            rules = compile_rules(rule_texts, acls, Action.DENY)
            for _ in range(2):
                for given in many:
                    if evaluate(rules, given) != evaluate_rules(rules, given):
                        wrong.append((rule_texts, given))
        self.assertEqual(wrong, [])

    def test_urls_and_agents_are_not_remembered(self) -> None:
        """
        Rules that read the URL, the path or the User-Agent remember
        nothing: those values hardly repeat.
        """
        acls = compile_acls(
            {
                "images": {"url_regex": ["[.]png$"]},
                "cgi": {"urlpath_regex": ["^/cgi-bin/"]},
                "curl": {"browser": ["^curl/"]},
                "lan": {"src": ["192.168.1.0/24"]},
            },
            "/",
        )
        for name in ("images", "cgi", "curl"):
            rules = compile_rules([f"allow lan {name}"], acls, Action.DENY)
            evaluate(rules, LAN)
            self.assertEqual((rules.memo_key, rules.memo), (None, {}))
        rules = compile_rules(["allow lan"], acls, Action.DENY)
        evaluate(rules, LAN)
        self.assertEqual(list(rules.memo), [(ip("192.168.1.10"),)])

    def test_memo_is_bounded(self) -> None:
        """
        However many clients come, the memo holds at most 4096 verdicts.
        """
        rules = compile_rules(["allow lan"], ACLS, Action.DENY)
        sizes = set()
        for n in range(5000):
            evaluate(rules, facts(client_ip=ipaddress.ip_address(0x0A000000 + n)))
            sizes.add(len(rules.memo))
        self.assertEqual(max(sizes), 4096)


class ParseTests(SynchronousTestCase):
    """
    Tests for L{parse_rule} and L{compile_policy}.
    """

    def test_bad_rules(self) -> None:
        """
        A rule must be allow or deny followed by known ACL names; unknown
        names get a suggestion.
        """
        cases = [
            ("", 'rule "" must start with "allow" or "deny", like "allow localnet"'),
            (
                "permit lan",
                'rule "permit lan" must start with "allow" or "deny", like "allow localnet"',
            ),
            (
                "Allow lan",
                'rule "Allow lan" must start with "allow" or "deny", like "allow localnet"',
            ),
            ("allow", 'rule "allow" names no ACL (write "allow all" to match every request)'),
            ("allow lna", 'rule "allow lna" names an unknown ACL "lna" (did you mean lan?)'),
            (
                "deny !blokced",
                'rule "deny !blokced" names an unknown ACL "blokced" (did you mean blocked?)',
            ),
            ("deny !", 'rule "deny !" names an unknown ACL ""'),
            ("deny zzzzzz", 'rule "deny zzzzzz" names an unknown ACL "zzzzzz"'),
        ]
        wrong = []
        for text, want in cases:
            try:
                parse_rule(text, ACLS)
            except RuleError as e:
                got = (str(e), e.element)
            else:
                got = ("no error", None)
            if got != (want, text):
                wrong.append((text, got))
        self.assertEqual(wrong, [])

    def _policy_error(
        self, http_access: Sequence[str], cache: Sequence[str] = (), authentication: bool = False
    ) -> tuple[str | None, str]:
        """The key and message of the error compiling a policy, or "no error"."""
        try:
            compile_policy(ACLS, http_access, cache, authentication)
        except RuleError as e:
            return e.key, str(e)
        return None, "no error"

    def test_open_proxy(self) -> None:
        """
        An allow rule any client address satisfies is refused, unless an
        earlier deny of negated client restrictions turned others away.
        """
        message = (
            "would make an open proxy: it allows clients from any address (add a src ACL "
            'such as localnet, or a proxy_auth ACL, to it, or put "deny !localnet" before it)'
        )
        cases = [
            (["allow all"], ("http_access", f'rule "allow all" {message}')),
            (["deny !Safe_ports", "allow web"], ("http_access", f'rule "allow web" {message}')),
            (["allow !lan"], ("http_access", f'rule "allow !lan" {message}')),
            (["allow lan", "allow all"], ("http_access", f'rule "allow all" {message}')),
            (["deny !lan", "allow all"], (None, "no error")),
            (["deny !lan !localhost", "allow web"], (None, "no error")),
            (["deny !lan web", "allow all"], ("http_access", f'rule "allow all" {message}')),
            (["deny !all", "allow web"], ("http_access", f'rule "allow web" {message}')),
            (["allow lan web"], (None, "no error")),
            (["deny all"], (None, "no error")),
        ]
        wrong = [
            (rules, got, want)
            for rules, want in cases
            if (got := self._policy_error(rules, authentication=True)) != want
        ]
        self.assertEqual(wrong, [])

    def test_authentication_allows_any_address(self) -> None:
        """
        A proxy_auth ACL restricts clients as well as a src ACL does, so
        C{allow users} is not an open proxy, but needs an htpasswd file.
        """
        self.assertEqual(
            [
                self._policy_error(["allow users"], authentication=True),
                self._policy_error(["deny !users", "allow all"], authentication=True),
                self._policy_error(["allow users"]),
                self._policy_error(["allow lan"], ["deny !staff"]),
            ],
            [
                (None, "no error"),
                (None, "no error"),
                (
                    "http_access",
                    'rule "allow users" uses the proxy_auth ACL users, but [auth] htpasswd '
                    "is not set",
                ),
                (
                    "cache",
                    'rule "deny !staff" uses the proxy_auth ACL staff, but [auth] htpasswd '
                    "is not set",
                ),
            ],
        )

    def test_cache_rules_may_be_open(self) -> None:
        """
        C{cache} rules do not grant access, so C{allow all} is fine there.
        """
        self.assertEqual(self._policy_error(["allow lan"], ["allow all"]), (None, "no error"))


class PolicyTests(SynchronousTestCase):
    """
    Tests for L{AccessPolicy}.
    """

    def test_default_policy(self) -> None:
        """
        The default policy is the default rules over the built-ins, default
        deny, with no cache rules (default allow) and no authentication.
        """
        policy = default_policy()
        self.assertEqual(
            (
                policy.http_access.texts,
                policy.http_access.default,
                policy.cache.texts,
                policy.cache.default,
                policy.needs_auth,
            ),
            (DEFAULT_HTTP_ACCESS, Action.DENY, (), Action.ALLOW, False),
        )

    def test_needs_auth(self) -> None:
        """
        A policy needs authentication when some rule uses C{proxy_auth}.
        """
        policy = compile_policy(ACLS, ["allow lan staff"], [], authentication=True)
        self.assertTrue(policy.needs_auth)

    def test_with_local_addresses(self) -> None:
        """
        The proxy's own addresses join C{to_localhost}, so a LAN client
        cannot reach services bound to the proxy's LAN address through it.
        """
        policy = default_policy().with_local_addresses([ip("192.168.1.1"), ip("fd00::1")])
        verdicts = [
            evaluate(policy.http_access, resolved("192.168.1.1")).action,
            evaluate(policy.http_access, resolved("fd00::1")).action,
            evaluate(default_policy().http_access, resolved("192.168.1.1")).action,
        ]
        self.assertEqual(verdicts, [Action.DENY, Action.DENY, Action.ALLOW])

    def test_with_local_addresses_respects_redefinition(self) -> None:
        """
        A C{to_localhost} redefined as another kind is left alone.
        """
        acls = compile_acls({"to_localhost": {"dstdomain": ["localhost"]}}, "/")
        policy = compile_policy(acls, DEFAULT_HTTP_ACCESS, (), authentication=False)
        self.assertIs(policy.with_local_addresses([ip("192.168.1.1")]), policy)

    def test_equality(self) -> None:
        """
        Policies compare by their ACL definitions and rule texts.
        """
        self.assertEqual(default_policy(), default_policy())
        other = compile_policy(ACLS, ["allow lan"], [], authentication=False)
        self.assertNotEqual(default_policy(), other)
        self.assertIsInstance(other, AccessPolicy)
