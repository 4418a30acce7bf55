# -*- test-case-name: tests.test_proxy_manager -*-
"""
The cache manager pages on the proxy port (C{squidclient mgr:PAGE},
C{/squid-internal-mgr/PAGE}): recognised before admission, answered by
the proxy itself, never looked up in the cache, never stored, never
forwarded.

Who may read them is C{[manager] allow_from} (loopback by default);
anyone else gets 403.  The figures are the whole service's
(L{squeak.proxy.stats.ServiceStats.figures}): with workers, the worker
that answers adds up every worker's published counters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from squeak import __version__
from squeak.access.purge import may_purge
from squeak.errors import ProxyError
from squeak.proxy.logtag import Answer
from squeak.proxy.state import ExchangeState
from squeak.stats.pages import (
    PAGES,
    ManagerRequest,
    counters_page,
    info_page,
    manager_request,
    menu_page,
    objects_page,
    render,
    wants_json,
)

if TYPE_CHECKING:
    from squeak.proxy.exchange import ProxyExchange

__all__ = ["answer_manager_request"]


def answer_manager_request(exchange: ProxyExchange) -> bool:
    """
    Answer the request if it asks for a manager page.

    The router asks before admission for targets containing
    C{squid-internal-mgr/}: origin-form C{/squid-internal-mgr/PAGE}, and
    absolute C{http://} URIs naming this proxy
    (L{ProxyExchange.names_of_this_proxy}), answered here
    rather than forwarded to itself; any other host's manager path is
    forwarded as usual.  squidclient's C{cache_object://} target, which
    admission refuses, is looked for only then, so that other requests pay
    nothing for it.

    @return: Whether it was a manager request (answered, or refused).
    """
    target = exchange.uri
    if b"squid-internal-mgr/" not in target and not target[:13].lower().startswith(
        b"cache_object:"
    ):
        return False
    if exchange.channel.intercepting:
        return False  # origin-form requests there are for the origin
    names, port = exchange.names_of_this_proxy()
    request = manager_request(target, own_names=names, local_port=port)
    if request is None:
        return False
    exchange.counted = False
    try:
        _answer(exchange, request)
    except ProxyError as error:
        exchange.send_error(error)
    return True


def _answer(exchange: ProxyExchange, request: ManagerRequest) -> None:
    """
    Send a page.

    @raise ProxyError: 403 outside C{[manager] allow_from}, 405 for a
        method other than GET and HEAD, 404 for an unknown page, 400 for
        C{objects} without a URL.
    """
    context = exchange.context
    if not may_purge(exchange.client_host, context.config.manager.allow_from):
        exchange.answer = Answer.DENIED
        context.counters.denied_by("manager.allow_from")
        raise ProxyError(
            "ERR_ACCESS_DENIED", 403, "the cache manager pages are not allowed from this address"
        )
    exchange.answer = Answer.ORIGIN
    if exchange.method not in (b"GET", b"HEAD"):
        raise ProxyError("ERR_UNSUP_REQ", 405, "the cache manager pages answer GET and HEAD only")
    now = context.reactor.seconds()
    stats = context.stats
    if request.page == "menu":
        page = menu_page()
    elif request.page == "objects":
        url = request.query.get("url")
        if not url:
            raise ProxyError("ERR_INVALID_REQ", 400, "objects needs ?url=URL")
        variants = [variant.as_dict() for variant in context.cache.stored_variants(url, now)]
        page = objects_page(url, variants)
    elif request.page in PAGES and stats is not None:
        figures, _ = stats.figures()
        if request.page == "info":
            page = info_page(
                figures,
                version=__version__,
                started=stats.started,
                now=now,
                workers=context.config.proxy.workers,
            )
        else:
            page = counters_page(figures, now=now)
    else:
        raise ProxyError(
            "ERR_INVALID_REQ", 404, f"no cache manager page {request.page!r} (see menu)"
        )
    body, content_type = render(page, as_json=wants_json(request, exchange.field(b"accept")))
    exchange.state = ExchangeState.ANSWERING
    exchange.set_status(200)
    exchange.set_field(b"Content-Type", content_type)
    # Never stored by any cache on the way (RFC 9111 §5.2.2.5).
    exchange.set_field(b"Cache-Control", b"no-store")
    exchange.content_length = len(body)
    exchange.write(body)
    exchange.finish()
