# -*- test-case-name: tests.test_errorpages -*-
"""
Tests for L{squeak.errorpages}: templates by error name and language,
C{Accept-Language} negotiation, the administrator's contact, and broken
templates left out with one problem line each.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from squeak.config import ConfigError, parse_config
from squeak.errorpages import (
    ErrorPages,
    load_error_pages,
    negotiate_language,
    parse_accept_language,
    template_problem,
)
from squeak.errors import ProxyError

#: (why, Accept-Language, ranges most preferred first)
ACCEPT_LANGUAGE = [
    ("RFC 9110 §12.5.4: order kept at equal weight", "de, en", ["de", "en"]),
    ("q-values rank", "en;q=0.5, fr;q=0.9, de", ["de", "fr", "en"]),
    ("q=0 means not acceptable", "de;q=0, en", ["en"]),
    ("case-insensitive, spaces allowed", " PT-BR ; q=0.8 , En", ["en", "pt-br"]),
    ("the wildcard is a range", "*;q=0.1, de", ["de", "*"]),
    ("malformed elements are skipped", "d e, en;q=x, fr;q=2, it", ["it"]),
    ("empty", "", []),
]  # fmt: skip

#: (why, Accept-Language, available, chosen); the default is "en"
NEGOTIATION = [
    ("no field: the default", None, ["en", "de"], "en"),
    ("an exact match", "de", ["en", "de"], "de"),
    ("the first acceptable set", "fr, de;q=0.5", ["en", "de"], "de"),
    ("RFC 4647 §3.4 lookup: pt-br falls back to pt", "pt-br", ["en", "pt"], "pt"),
    ("a range takes a longer tag", "pt", ["en", "pt-br"], "pt-br"),
    ("nothing matches: the default", "ja, ko", ["en", "de"], "en"),
    ("the wildcard: the default", "*", ["en", "de"], "en"),
    ("q=0 refuses a set", "de;q=0", ["en", "de"], "en"),
]  # fmt: skip


class NegotiationTests(SynchronousTestCase):
    """
    C{Accept-Language} is read and matched as RFC 9110 and RFC 4647 say.
    """

    def test_parse_table(self) -> None:
        """Each row's field gives its ranges in order of preference."""
        wrong = [
            (why, got)
            for why, value, want in ACCEPT_LANGUAGE
            if (got := parse_accept_language(value)) != want
        ]
        self.assertEqual(wrong, [])

    def test_negotiation_table(self) -> None:
        """Each row chooses its language among the sets available."""
        wrong = [
            (why, got)
            for why, value, available, want in NEGOTIATION
            if (got := negotiate_language(value, available, "en")) != want
        ]
        self.assertEqual(wrong, [])


class TemplateProblemTests(SynchronousTestCase):
    """
    A template is checked before it is used.
    """

    def test_problems(self) -> None:
        """
        Known placeholders pass; an unknown one or a stray C{$} is named.
        """
        self.assertIsNone(template_problem("<p>${title} $url costs $$5 ${cache_mgr}</p>"))
        self.assertTrue(
            (template_problem("<p>${user}</p>") or "").startswith(
                "unknown placeholder ${user} (known: ${cache_mgr}, ${client}, "
            )
        )
        self.assertEqual(
            template_problem("<p>ok</p>\n<p>costs $5</p>"),
            '"$" not followed by a placeholder name at line 2 (write "$$" for a "$")',
        )


def _write(path: str, text: str | bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def _render(pages: ErrorPages, name: str, accept_language: str | None = None) -> tuple[str, str]:
    page = pages.render(
        ProxyError(name, None, "the detail"),
        accept_language=accept_language,
        url="http://o.test/<x>",
        method="GET",
        client="192.0.2.7",
        visible_hostname="proxy.test",
        now=0.0,
    )
    return page.body.decode(), page.language


class DirectoryTests(SynchronousTestCase):
    """
    L{load_error_pages} reads an C{error_directory} and L{ErrorPages} picks
    a template by language, then name, then C{error.html}, then the
    shipped page.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        d = self.directory
        _write(f"{d}/ERR_ACCESS_DENIED.html", "<p>EN denied ${url} ask ${cache_mgr}</p>")
        _write(f"{d}/de/error.html", "<p>DE ${name}: ${detail}</p>")
        _write(f"{d}/de/ERR_ACCESS_DENIED.html", "<p>DE verboten ${user}</p>")
        _write(f"{d}/de/ERR_DNS_FAIL.html", b"<p>\xff not utf-8</p>")
        os.symlink(f"{d}/missing.html", f"{d}/de/ERR_READ_ERROR.html")
        _write(f"{d}/fr/ERR_ACCESS_DENIED.html", "<p>FR interdit ${url}</p>")
        _write(f"{d}/notes.txt", "not a template")

    def test_templates_by_language_and_name(self) -> None:
        """
        The directory's own templates are the default language's; a
        language's C{error.html} covers its other errors; a language
        without a template for an error uses the default language's.
        """
        pages, _ = load_error_pages(self.directory, cache_mgr="ops@example.org")
        self.assertEqual(sorted(pages.sets), ["de", "en", "fr"])
        english = "<p>EN denied http://o.test/&lt;x&gt; ask ops@example.org</p>"
        cases = [
            ("ERR_ACCESS_DENIED", None, english, "en"),
            ("ERR_ACCESS_DENIED", "fr-ca, de", "<p>FR interdit http://o.test/&lt;x&gt;</p>", "fr"),
            ("ERR_CONNECT_FAIL", "de", "<p>DE ERR_CONNECT_FAIL: the detail</p>", "de"),
            ("ERR_ACCESS_DENIED", "ja", english, "en"),
        ]  # fmt: skip
        wrong = [
            (name, accept, got)
            for name, accept, body, language in cases
            if (got := _render(pages, name, accept)) != (body, language)
        ]
        self.assertEqual(wrong, [])

    def test_other_errors_get_the_shipped_page(self) -> None:
        """
        An error without a template in the client's language nor in the
        default language gets the shipped page, in English (so said), showing
        the contact as a mailto: link.
        """
        pages, _ = load_error_pages(
            self.directory, default_language="de", cache_mgr="ops@example.org"
        )
        self.assertEqual(_render(pages, "ERR_CONNECT_FAIL", "fr")[1], "de")
        pages, _ = load_error_pages(self.directory, cache_mgr="ops@example.org")
        body, language = _render(pages, "ERR_CONNECT_FAIL", "fr")
        self.assertEqual(language, "en")
        self.assertIn("<!-- ERR_CONNECT_FAIL -->", body)
        self.assertIn(
            'Your cache administrator is <a href="mailto:ops@example.org">ops@example.org</a>.',
            body,
        )

    def test_broken_templates_are_left_out(self) -> None:
        """
        A template with an unknown placeholder, one not in UTF-8 and one that
        cannot be read are each left out with one problem line; their
        pages fall back to the next template.
        """
        pages, problems = load_error_pages(self.directory)
        d = self.directory
        self.assertEqual(
            [p.split(": ", 1)[0] for p in problems],
            [
                f"error page template {d}/de/ERR_ACCESS_DENIED.html",
                f"error page template {d}/de/ERR_DNS_FAIL.html",
                f"error page template {d}/de/ERR_READ_ERROR.html",
            ],
        )
        self.assertIn("unknown placeholder ${user}", problems[0])
        self.assertIn("not UTF-8 (byte 3)", problems[1])
        self.assertIn("cannot read: No such file or directory", problems[2])
        self.assertTrue(
            problems[0].endswith("using the next template (ultimately the shipped page) instead")
        )
        for name in ("ERR_ACCESS_DENIED", "ERR_DNS_FAIL", "ERR_READ_ERROR"):
            self.assertEqual(_render(pages, name, "de"), (f"<p>DE {name}: the detail</p>", "de"))

    def test_no_directory(self) -> None:
        """
        Without a directory, or with one that cannot be read, the shipped
        page is used (the second with one problem line).
        """
        self.assertEqual(load_error_pages(""), (ErrorPages(), []))
        pages, problems = load_error_pages(f"{self.directory}/nowhere")
        self.assertEqual(pages, ErrorPages())
        self.assertEqual(len(problems), 1)
        self.assertIn("<!-- ERR_ACCESS_DENIED -->", _render(pages, "ERR_ACCESS_DENIED", "de")[0])


class ConfigTests(SynchronousTestCase):
    """
    The C{[errors]} table.
    """

    def test_values(self) -> None:
        """
        The directory resolves against the file's; language and contact
        are kept.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(directory, "pages"))
        config = parse_config(
            '[errors]\nerror_directory = "pages"\nerror_default_language = "DE"\n'
            'cache_mgr = "ops@example.org"\n',
            os.path.join(directory, "squeak.toml"),
        )
        self.assertEqual(
            (
                config.errors.error_directory,
                config.errors.error_default_language,
                config.errors.cache_mgr,
            ),
            (os.path.join(directory, "pages"), "de", "ops@example.org"),
        )

    def test_errors(self) -> None:
        """
        A missing directory, a bad language tag or an empty contact is one
        line naming the key.
        """
        cases = [
            ('error_directory = "/nonexistent/pages"',
             "errors.error_directory: cannot read the directory"),
            ('error_default_language = "english!"',
             "errors.error_default_language: expected a language tag"),
            ('cache_mgr = ""', "errors.cache_mgr: expected an e-mail address or a name"),
        ]  # fmt: skip
        for line, want in cases:
            with self.assertRaises(ConfigError) as caught:
                parse_config(f"[errors]\n{line}\n", "/etc/squeak.toml")
            self.assertIn(f"/etc/squeak.toml:2: {want}", str(caught.exception))
