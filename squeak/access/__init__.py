"""
Access control: who may use the proxy, for what, and who they are.

  - L{squeak.access.acl} (pure): the request L{Facts} and the ACL kinds
    (C{src}, C{dstdomain}, C{port}, ...) compiled once into fast matchers.
  - L{squeak.access.rules} (pure): ordered C{http_access} and C{cache}
    allow/deny rules over those ACLs, evaluated into a L{Verdict} with an
    explicit default, and the compiled L{AccessPolicy}.
  - L{squeak.access.auth} (sync, no Twisted): C{Proxy-Authorization: Basic}
    parsing, the htpasswd file, password verification (slow: run it in a
    thread) and the verified-credentials cache.

docs/access.md describes the configuration and the semantics.
"""
