"""The twistd plugin: C{twistd -n squeak --config etc/squeak.toml}.

Kept tiny and lazy: L{ServiceMaker} imports L{squeak.tap} only when the
plugin is used, so C{twistd --help} never imports the proxy.
"""

from twisted.application.service import ServiceMaker

Squeak = ServiceMaker(
    "squeak",
    "squeak.tap",
    "A caching forward HTTP proxy (Squid-like) on Twisted",
    "squeak",
)
