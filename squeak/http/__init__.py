"""
Pure HTTP/1.1: the grammar, request and response heads, chunked bodies,
field and forwarding rules, request-targets and TLS SNI.

Nothing in this package imports Twisted or diskcache, reads the clock or
touches a socket (C{tests/test_architecture.py} checks it).
"""
