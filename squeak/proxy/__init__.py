"""
The proxy: one exchange per request (L{squeak.proxy.exchange}), whose state
is one named value, and one handler per kind of answer (admission, hit, miss
and validation, relay, local); the client channel in
L{squeak.proxy.client}, what they share in L{squeak.proxy.context}, and the
access log's result codes in L{squeak.proxy.logtag}.
"""

__all__: list[str] = []
