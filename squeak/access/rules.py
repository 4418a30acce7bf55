# -*- test-case-name: tests.test_access_rules -*-
"""
Access rules: ordered allow/deny lines over ACLs, evaluated into a verdict.

C{http_access} and C{cache} are lists of rules such as C{"allow localnet"} or
C{"deny CONNECT !SSL_ports"}. As in Squid (C{acl/Tree.h}, C{Checklist.h}):

  - a rule matches when all its ACLs match (AND); C{!name} negates one;
  - the first matching rule decides;
  - unlike Squid, which falls back to the opposite of the last rule, the
    default when no rule matches is explicit: C{deny} for C{http_access},
    C{allow} for C{cache}.

Evaluation is lazy about what costs I/O. Within a rule, ACLs that need
nothing are evaluated first, then those needing the destination's
addresses (C{dst}, C{to_localhost}), then those needing a user
(C{proxy_auth}); a rule stops at its first ACL that does not match. A rule
left undecided for lack of an input is skipped over provisionally: if the
later rules reach the same action anyway, that is the verdict; otherwise
evaluation returns L{Action.NEED_DST} or L{Action.AUTH_REQUIRED}, and the
caller resolves the destination, or verifies the credentials the client sent
(or answers 407 if there are none), and evaluates again with the richer
L{Facts}. So a request that cheaper ACLs decide never costs a DNS lookup or a
password check.

C{proxy_auth} and negation: C{!staff} without a user cannot be decided
either (the client may or may not be staff), so it asks for credentials too,
as Squid does. C{deny !staff} therefore challenges anonymous clients, which is
what it means; a rule's other ACLs are evaluated first, so C{deny !staff
localnet} challenges only clients of C{localnet}.

This module is pure: it imports no Twisted and never reads the clock.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from squeak.access.acl import Acl, Facts, Need, builtin_acls

__all__ = [
    "DEFAULT_HTTP_ACCESS",
    "AccessPolicy",
    "Action",
    "Rule",
    "RuleError",
    "RuleList",
    "Term",
    "Verdict",
    "compile_policy",
    "compile_rules",
    "default_policy",
    "evaluate",
    "may_cache",
    "parse_rule",
]

#: The default C{http_access} rules, in the embedded defaults and
#: etc/squeak.toml. C{deny to_localhost !localhost}: a LAN client must never
#: reach the proxy host's own loopback services through it, while a client
#: on the proxy host gains nothing it does not already have.
DEFAULT_HTTP_ACCESS = (
    "deny !Safe_ports",
    "deny CONNECT !SSL_ports",
    "deny to_localhost !localhost",
    "allow localnet",
    "deny all",
)


class Action(enum.Enum):
    """
    What a verdict tells the proxy to do.

    @cvar ALLOW: Serve the request.
    @cvar DENY: Answer 403 C{ERR_ACCESS_DENIED}.
    @cvar AUTH_REQUIRED: A rule needs a verified user and there is none:
        verify the client's credentials and evaluate again, or answer 407
        C{ERR_CACHE_ACCESS_DENIED} if there are none or they are wrong.
    @cvar NEED_DST: A rule needs the destination's addresses: resolve the
        host and evaluate again with L{Facts.dst_addresses} set (C{()} if
        the lookup failed).
    """

    ALLOW = "allow"
    DENY = "deny"
    AUTH_REQUIRED = "auth_required"
    NEED_DST = "need_dst"


@dataclass(frozen=True, slots=True)
class Verdict:
    """
    The outcome of evaluating rules, with its reason for logs.

    @ivar action: What to do.
    @ivar rule: The text of the rule that decided (or that needs more
        facts), or L{None} for the default.
    @ivar reason: A sentence for the debug log and error page details.
    """

    action: Action
    rule: str | None
    reason: str


class RuleError(ValueError):
    """
    A rule cannot be used; the configuration loader adds file and line.

    @ivar element: The rule as written, to find its line.
    @ivar key: The rule list, C{"http_access"} or C{"cache"}, once known.
    """

    def __init__(self, problem: str, element: str | None = None, key: str | None = None) -> None:
        super().__init__(problem)
        self.element = element
        self.key = key


@dataclass(frozen=True, slots=True)
class Term:
    """One ACL of a rule, possibly negated."""

    acl: Acl
    negated: bool

    def __str__(self) -> str:
        """The term as written: C{name} or C{!name}."""
        return ("!" if self.negated else "") + self.acl.name


#: One evaluation step: what it needs, the matcher, whether negated, and the
#: verdict to return when the need is not met (L{None} for L{Need.NOTHING}).
_Step = tuple[Need, Callable[[Facts], bool], bool, Verdict | None]


@dataclass(frozen=True, slots=True)
class Rule:
    """
    One compiled rule.

    @ivar action: L{Action.ALLOW} or L{Action.DENY}.
    @ivar terms: The ACLs as written.
    @ivar text: The rule, normalized (single spaces).
    @ivar number: Its 1-based position in its list.
    """

    action: Action
    terms: tuple[Term, ...]
    text: str
    number: int
    verdict: Verdict = field(compare=False, repr=False)
    steps: tuple[_Step, ...] = field(compare=False, repr=False)

    @property
    def needs(self) -> frozenset[Need]:
        """Everything some ACL of this rule needs."""
        return frozenset(term.acl.need for term in self.terms) - {Need.NOTHING}


@dataclass(frozen=True, slots=True)
class RuleList:
    """
    Ordered rules and the explicit default when none matches.

    @ivar rules: The rules, first match wins.
    @ivar default: The action when no rule matches.
    """

    rules: tuple[Rule, ...]
    default: Action
    default_verdict: Verdict = field(compare=False, repr=False)
    # The facts the rules' ACLs read, as one tuple (None when one of them
    # reads the URL, path or User-Agent, whose values hardly repeat), and
    # verdicts already reached for such tuples (see evaluate).
    memo_key: Callable[[Facts], tuple[object, ...]] | None = field(
        default=None, compare=False, repr=False
    )
    memo: dict[tuple[object, ...], Verdict] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def texts(self) -> tuple[str, ...]:
        """The rules' texts, in order."""
        return tuple(rule.text for rule in self.rules)


def _suggest(name: str, known: Iterable[str]) -> str:
    """A did-you-mean for an unknown ACL name, or nothing."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def parse_rule(text: str, acls: Mapping[str, Acl], number: int = 1) -> Rule:
    """
    Parse C{"allow|deny [!]acl [!]acl ..."}.

    @param acls: The ACLs by name.
    @param number: The rule's position in its list, for messages.
    @raise RuleError: If the action is not allow or deny, no ACL is named, or
        an ACL is unknown.
    """
    words = text.split()
    if not words or words[0] not in ("allow", "deny"):
        raise RuleError(
            f'rule {_show(text)} must start with "allow" or "deny", like "allow localnet"',
            text,
        )
    if len(words) == 1:
        raise RuleError(
            f'rule {_show(text)} names no ACL (write "{words[0]} all" to match every request)',
            text,
        )
    terms = []
    for word in words[1:]:
        negated = word.startswith("!")
        name = word[1:] if negated else word
        acl = acls.get(name)
        if acl is None:
            raise RuleError(
                f"rule {_show(text)} names an unknown ACL {_show(name)}{_suggest(name, acls)}",
                text,
            )
        terms.append(Term(acl, negated))
    action = Action(words[0])
    normalized = " ".join(words)
    quoted = f'rule {number} "{normalized}"'
    steps: list[_Step] = []
    for term in sorted(terms, key=lambda t: t.acl.need):
        pending = None
        if term.acl.need is Need.DESTINATION:
            pending = Verdict(
                Action.NEED_DST, normalized, f"{quoted} needs the destination address ({term})"
            )
        elif term.acl.need is Need.USER:
            pending = Verdict(
                Action.AUTH_REQUIRED, normalized, f"{quoted} needs an authenticated user ({term})"
            )
        steps.append((term.acl.need, term.acl.match, term.negated, pending))
    verdict = Verdict(action, normalized, f"{quoted} matched")
    return Rule(action, tuple(terms), normalized, number, verdict, tuple(steps))


def _show(text: str) -> str:
    """Quote a rule or name for a message."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def compile_rules(texts: Sequence[str], acls: Mapping[str, Acl], default: Action) -> RuleList:
    """
    Compile a list of rules.

    @param default: L{Action.ALLOW} or L{Action.DENY}, when no rule matches.
    @raise RuleError: For the first unusable rule.
    """
    rules = tuple(parse_rule(text, acls, n) for n, text in enumerate(texts, start=1))
    verdict = Verdict(default, None, f"no rule matched (default: {default.value})")
    read = {FACTS_READ[term.acl.kind] for rule in rules for term in rule.terms}
    return RuleList(rules, default, verdict, _memo_key(read))


def _memo_key(read: set[str]) -> Callable[[Facts], tuple[object, ...]] | None:
    """
    The function giving the tuple of facts named in C{read}, or L{None}
    when some of them are not worth remembering verdicts for.
    """
    if read & _UNREPEATED_FACTS:
        return None
    names = sorted(read)
    if len(names) >= 2:
        return operator.attrgetter(*names)
    if names:
        single = operator.attrgetter(names[0])
        return lambda facts: (single(facts),)
    return lambda facts: ()


#: The attribute of L{Facts} each ACL kind reads.
FACTS_READ: Mapping[str, str] = {
    "src": "client_ip",
    "dst": "dst_addresses",
    "dstdomain": "host",
    "port": "port",
    "method": "method",
    "proto": "scheme",
    "url_regex": "url",
    "urlpath_regex": "path",
    "time": "now_local",
    "proxy_auth": "user",
    "maxconn": "client_connections",
    "browser": "user_agent",
}
#: Facts that differ from request to request: not worth remembering.
_UNREPEATED_FACTS = frozenset({"url", "path", "user_agent"})
#: Verdicts remembered per rule list before the memo starts over.
_MEMO_LIMIT = 4096


def evaluate(rules: RuleList, facts: Facts) -> Verdict:
    """
    Evaluate C{rules} for one request (L{evaluate_rules}), remembering the
    verdict for the facts the rules read: evaluation is a pure function of
    them, and a LAN's requests repeat the same few clients, ports and
    methods.
    """
    memo_key = rules.memo_key
    if memo_key is None:
        return evaluate_rules(rules, facts)
    key = memo_key(facts)
    verdict = rules.memo.get(key)
    if verdict is None:
        verdict = evaluate_rules(rules, facts)
        if len(rules.memo) >= _MEMO_LIMIT:
            rules.memo.clear()
        rules.memo[key] = verdict
    return verdict


def evaluate_rules(rules: RuleList, facts: Facts) -> Verdict:
    """
    Evaluate C{rules} for one request: the first rule whose ACLs all match
    decides; if none does, the list's default.

    A rule that reaches an ACL whose input is missing (the destination's
    addresses while C{facts.dst_addresses} is L{None}, a user while
    C{facts.user} is L{None}, for C{proxy_auth} negated or not) is undecided.
    Evaluation goes on past it: if the rules after it decide the same action
    as the undecided rule would, that is the answer whichever way the
    missing fact turns out, and nothing needs to be looked up (so a client
    outside C{localnet} is denied without a DNS lookup by the default
    rules). Otherwise the first undecided rule's L{Action.NEED_DST} or
    L{Action.AUTH_REQUIRED} verdict is returned: the caller supplies what is
    missing and evaluates again. Evaluation costs microseconds.
    """
    dst_known = facts.dst_addresses is not None
    user_known = facts.user is not None
    undecided: Verdict | None = None
    undecided_action: Action | None = None
    for rule in rules.rules:
        pending: Verdict | None = None
        for need, match, negated, missing in rule.steps:
            if missing is not None and not (dst_known if need is Need.DESTINATION else user_known):
                if pending is None:
                    pending = missing
                continue
            if match(facts) == negated:
                break
        else:
            if pending is None:
                decided = rule.verdict
                break
            if undecided is None:
                undecided, undecided_action = pending, rule.action
            elif rule.action is not undecided_action:
                return undecided
    else:
        decided = rules.default_verdict
    if undecided is None or decided.action is undecided_action:
        return decided
    return undecided


def may_cache(rules: RuleList, facts: Facts) -> bool:
    """
    Whether the C{cache} rules let this response be stored (default allow).

    C{cache} is decided once the request has been forwarded, so the
    destination is known; a rule that still cannot be decided (a
    C{proxy_auth} ACL for an anonymous client, an unresolved destination)
    forbids storing, the safe answer.
    """
    return evaluate(rules, facts).action is Action.ALLOW


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """
    The whole compiled access configuration.

    @ivar acls: Every ACL by name, built-ins included.
    @ivar http_access: Who may use the proxy for what (default deny).
    @ivar cache: What may be stored (default allow).
    """

    acls: Mapping[str, Acl]
    http_access: RuleList
    cache: RuleList

    @property
    def needs_auth(self) -> bool:
        """Whether some rule can ask for credentials."""
        return any(Need.USER in rule.needs for rule in self.http_access.rules + self.cache.rules)

    def with_local_addresses(
        self, addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]
    ) -> AccessPolicy:
        """
        A copy whose C{to_localhost} also covers C{addresses}: the I/O layer
        adds the proxy's own listening addresses (and, for a wildcard
        listener, the host's interface addresses) at start-up. A
        C{to_localhost} redefined as another kind than C{dst} is left alone.
        """
        acl = self.acls.get("to_localhost")
        if acl is None or acl.kind != "dst":
            return self
        networks = [ipaddress.ip_network(address) for address in addresses]
        acls = dict(self.acls)
        acls["to_localhost"] = acl.with_destinations(networks)
        return AccessPolicy(
            acls,
            compile_rules(self.http_access.texts, acls, self.http_access.default),
            compile_rules(self.cache.texts, acls, self.cache.default),
        )


def _check_open(rules: RuleList) -> None:
    """
    Refuse an C{allow} rule that any client on the network could satisfy:
    one with no positive C{src} ACL narrower than a whole address family and
    no positive C{proxy_auth}, unless an earlier C{deny} rule made of only
    such negated ACLs (C{deny !localnet}) already turned everyone else away.

    @raise RuleError: For the first such rule.
    """
    restricted = False
    for rule in rules.rules:
        if rule.action is Action.DENY:
            if all(t.negated and t.acl.restricts_clients for t in rule.terms):
                restricted = True
        elif not restricted and not any(
            not t.negated and t.acl.restricts_clients for t in rule.terms
        ):
            raise RuleError(
                f"rule {_show(rule.text)} would make an open proxy: it allows clients from "
                "any address (add a src ACL such as localnet, or a proxy_auth ACL, to it, or "
                'put "deny !localnet" before it)',
                rule.text,
            )


def compile_policy(
    acls: Mapping[str, Acl],
    http_access: Sequence[str],
    cache: Sequence[str],
    authentication: bool,
) -> AccessPolicy:
    """
    Compile and check the access rules.

    @param acls: Every ACL by name (L{squeak.access.acl.compile_acls}).
    @param authentication: Whether an htpasswd file is configured; without
        one, a rule using C{proxy_auth} is an error.
    @raise RuleError: For the first unusable rule, with L{RuleError.key}
        naming its list.
    """
    lists = {}
    for key, texts, default in (
        ("http_access", http_access, Action.DENY),
        ("cache", cache, Action.ALLOW),
    ):
        try:
            rules = compile_rules(texts, acls, default)
            if not authentication:
                _check_no_auth(rules)
            if key == "http_access":
                _check_open(rules)
        except RuleError as e:
            e.key = key
            raise
        lists[key] = rules
    return AccessPolicy(dict(acls), lists["http_access"], lists["cache"])


def _check_no_auth(rules: RuleList) -> None:
    """
    Refuse C{proxy_auth} when no htpasswd file is configured.

    @raise RuleError: For the first rule using it.
    """
    for rule in rules.rules:
        for term in rule.terms:
            if term.acl.kind == "proxy_auth":
                raise RuleError(
                    f"rule {_show(rule.text)} uses the proxy_auth ACL {term.acl.name}, "
                    "but [auth] htpasswd is not set",
                    rule.text,
                )


def default_policy() -> AccessPolicy:
    """The embedded default policy: built-in ACLs, L{DEFAULT_HTTP_ACCESS}."""
    return compile_policy(builtin_acls(), DEFAULT_HTTP_ACCESS, (), authentication=False)
