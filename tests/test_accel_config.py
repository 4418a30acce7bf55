"""
Reading the accelerator's tables (squeak/accel/config.py) through the one
configuration loader: the minimal form, the richer one, and the errors,
each naming the key and, where it can be found, the line.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from squeak.accel.config import OriginServer, Route
from squeak.config import Config, ConfigError, parse_config


def _error(text: str) -> ConfigError:
    try:
        parse_config(text, "squeak.toml")
    except ConfigError as error:
        return error
    raise AssertionError("no error")


_MINIMAL = """
[[accel]]
http_port = ["127.0.0.1:8080"]
site = "app.example"
origins = ["127.0.0.1:9000", "127.0.0.1:9001"]
"""


class AccelConfigTests(SynchronousTestCase):
    def test_default_has_none(self) -> None:
        """Without [[accel]], no accelerator listens."""
        self.assertFalse(Config().accel.enabled)
        self.assertFalse(parse_config("", "squeak.toml").accel.enabled)

    def test_minimal_form(self) -> None:
        """The issue's minimal form: one site and one pool, both named after it."""
        accel = parse_config(_MINIMAL, "squeak.toml").accel
        self.assertEqual(len(accel.listeners), 1)
        self.assertEqual(accel.listeners[0].http_port[0].port, 8080)
        self.assertEqual(accel.sites["app.example"].pool, "app.example")
        pool = accel.pools["app.example"]
        self.assertEqual(
            pool.origins, (OriginServer("127.0.0.1", 9000), OriginServer("127.0.0.1", 9001))
        )
        self.assertEqual((pool.balance, pool.max_fails, pool.check_path), ("round-robin", 1, ""))
        self.assertTrue(accel.sites["app.example"].buffering)

    def test_rich_form(self) -> None:
        """Named sites and pools, routes, weights and checks."""
        accel = parse_config(
            """
[acl]
office = { src = ["10.0.0.0/8"] }

[[accel]]
http_port = ["127.0.0.1:8080"]
site = "App.Example"

[accel_site."app.example"]
pool = "app"
routes = [{prefix = "/static/", pool = "static", strip = true},
          {prefix = "/old/", pool = "app", rewrite = "/new/"}]
http_access = ["allow office", "deny all"]
forwarded = "forwarded"
default_ttl = "5min"

[accel_pool.app]
origins = [{address = "127.0.0.1:9000", weight = 3}, "127.0.0.1:9001"]
balance = "least-connections"
check_path = "/health"
check_interval = "2s"

[accel_pool.static]
origins = ["127.0.0.1:9100"]
balance = "hash-url"
""",
            "squeak.toml",
        ).accel
        site = accel.sites["app.example"]
        self.assertEqual(
            site.routes, (Route("/static/", "static", "/"), Route("/old/", "app", "/new/"))
        )
        self.assertEqual(site.default_ttl, 300.0)
        assert site.rules is not None
        self.assertEqual(site.rules.texts, ("allow office", "deny all"))
        self.assertEqual(accel.pools["app"].origins[0].weight, 3)
        self.assertEqual(accel.pools["app"].check_interval, 2.0)

    def test_errors(self) -> None:
        """Each mistake is named by its key, with what is wrong."""
        cases = [
            (
                '[[accel]]\nsite = "a"\norigins = ["127.0.0.1:1"]\n',
                "accel[0].http_port",
                "needs a listener",
            ),
            (
                '[[accel]]\nhttp_port = ["127.0.0.1:1"]\norigins = ["127.0.0.1:1"]\n',
                "accel[0].site",
                "needs the site",
            ),
            (
                '[[accel]]\nhttp_port = ["127.0.0.1:1"]\nsite = "a"\n',
                "accel[0].site",
                "no site 'a'",
            ),
            (
                '[[accel]]\nhttp_port = ["127.0.0.1:1"]\nsite = "a"\nprot = 1\n',
                "accel[0].prot",
                "unknown key",
            ),
            ('[accel_site.a]\npool = "nope"\n', "accel_site.a.pool", "no pool 'nope'"),
            ("[accel_site.a]\n", "accel_site.a.pool", "needs a pool or routes"),
            ('[accel_pool.p]\norigins = ["nowhere"]\n', "accel_pool.p.origins", ""),
            ("[accel_pool.p]\norigins = []\n", "accel_pool.p.origins", ""),
            (
                '[accel_pool.p]\norigins = ["127.0.0.1:1"]\nbalance = "random"\n',
                "accel_pool.p.balance",
                "random",
            ),
            (
                '[accel_pool.p]\norigins = [{address = "127.0.0.1:1", weight = 0}]\n',
                "accel_pool.p.origins",
                "weight",
            ),
            (
                '[accel_site.a]\npool = "p"\nroutes = [{prefix = "x", pool = "p"}]\n'
                '[accel_pool.p]\norigins = ["127.0.0.1:1"]\n',
                "accel_site.a.routes",
                "path",
            ),
            (
                '[accel_site.a]\npool = "p"\nhttp_access = ["allow nobody"]\n'
                '[accel_pool.p]\norigins = ["127.0.0.1:1"]\n',
                "accel_site.a.http_access",
                "nobody",
            ),
            (
                '[acl]\nu = { proxy_auth = ["REQUIRED"] }\n[auth]\nhtpasswd = ""\n'
                '[accel_site.a]\npool = "p"\nhttp_access = ["allow u"]\n'
                '[accel_pool.p]\norigins = ["127.0.0.1:1"]\n',
                "accel_site.a.http_access",
                "",
            ),
            (
                '[accel_site.a]\npool = "p"\n[accel_site.b]\npool = "p"\naliases = ["a"]\n'
                '[accel_pool.p]\norigins = ["127.0.0.1:1"]\n',
                "accel_site.b.aliases",
                "already a name",
            ),
            ("accel = 3\n", "accel", "[[accel]]"),
        ]
        wrong = []
        for text, key, words in cases:
            error = _error(text)
            if error.key != key or words not in error.problem:
                wrong.append((text, str(error)))
        self.assertEqual(wrong, [])

    def test_error_line(self) -> None:
        """An error inside a pool's table names its line."""
        error = _error('[accel_pool.p]\norigins = ["127.0.0.1:1"]\nmax_fails = 0\n')
        self.assertEqual((error.key, error.line), ("accel_pool.p.max_fails", 3))
        self.assertIn("squeak.toml:3: accel_pool.p.max_fails", str(error))


class DocumentationTests(SynchronousTestCase):
    def test_every_key_documented_and_shown(self) -> None:
        """
        Every key of the three tables has its heading in
        docs/configuration.md and a commented example in etc/squeak.toml.
        """
        import os
        import re
        from dataclasses import fields

        from squeak.accel.config import AccelListener, AccelPool, AccelSite

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(root, "docs", "configuration.md"), encoding="utf-8") as handle:
            docs = handle.read()
        with open(os.path.join(root, "etc", "squeak.toml"), encoding="utf-8") as handle:
            sample = handle.read()
        missing = []
        for cls, heading in (
            (AccelListener, "accel"),
            (AccelSite, "accel_site.NAME"),
            (AccelPool, "accel_pool.NAME"),
        ):
            for spec in fields(cls):
                if spec.metadata.get("internal"):
                    continue
                if f"### `{heading}.{spec.name}`" not in docs:
                    missing.append(f"docs: {heading}.{spec.name}")
                if not re.search(rf"^#\s+{spec.name} = ", sample, re.MULTILINE):
                    missing.append(f"etc: {spec.name}")
        self.assertEqual(missing, [])


class DescribeTests(SynchronousTestCase):
    def test_check_config_lines(self) -> None:
        """check-config shows listeners, sites with their routes, and pools."""
        from squeak.accel.config import describe

        accel = parse_config(
            _MINIMAL
            + '[accel_site."b.example"]\npool = "p"\n'
            + 'routes = [{prefix = "/s/", pool = "p", strip = true}]\n'
            + '[accel_pool.p]\norigins = [{address = "127.0.0.1:7", weight = 2}]\n'
            + 'check_path = "/h"\n',
            "squeak.toml",
        ).accel
        self.assertEqual(
            describe(accel),
            [
                "accel:       127.0.0.1:8080 -> app.example and b.example",
                "accel site:  b.example: /s/ -> p (as /); otherwise -> p",
                "accel site:  app.example: otherwise -> app.example",
                "accel pool:  p: round-robin 127.0.0.1:7 weight 2 "
                "(max_fails 1 in 10s, checks /h every 5s)",
                "accel pool:  app.example: round-robin 127.0.0.1:9000, 127.0.0.1:9001 "
                "(max_fails 1 in 10s)",
            ],
        )
