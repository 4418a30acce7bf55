"""squeak: a caching forward HTTP proxy on Twisted.

Nothing is imported here, so that the pure modules (config, target, headers,
accesslog) can be imported without pulling in Twisted.
"""

__version__ = "0.1.0"
