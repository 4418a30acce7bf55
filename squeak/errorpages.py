# -*- test-case-name: tests.test_errorpages -*-
"""
Error pages an administrator can make their own: templates by error name
and language, an administrator contact on every page, and the language
chosen by the client's C{Accept-Language} among the sets present.

Squid keeps its pages in C{errors/<language>/ERR_*} and lets
C{error_directory} replace them; squeak ships one English page,
C{squeak/templates/error.html}, filled for each error from
L{squeak.errors.CATALOGUE}.  C{[errors] error_directory} may hold:

  - C{ERR_NAME.html}: the page for that error, in the default language
    (C{error_default_language}, English unless set);
  - C{error.html}: the page for every other error, in that language;
  - C{<language>/ERR_NAME.html}, C{<language>/error.html}: the same for
    another language (C{de}, C{pt-br}), chosen by C{Accept-Language}.

A page is looked up by language, then C{ERR_NAME.html}, C{error.html},
then the shipped page.  Templates use C{${name}} placeholders
(L{PLACEHOLDERS}); every value is HTML-escaped.  They are read once, when
the service is built (start-up and reload), and checked then: a template
that cannot be read, is not UTF-8 or has a placeholder squeak does not
know is left out with one problem line, so its page falls back to the next
template (ultimately the shipped one) and rendering never fails.

Everything here is pure but L{load_error_pages}, which reads the
directory (no Twisted; the caller logs the problems it returns).
"""

from __future__ import annotations

import html
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from importlib.resources import files

from squeak.config_values import InvalidValueError, _readable_path, _setting, _show
from squeak.errors import CATALOGUE, ErrorInfo, ErrorLike

__all__ = [
    "PLACEHOLDERS",
    "SHIPPED_LANGUAGE",
    "ErrorPages",
    "ErrorsConfig",
    "RenderedPage",
    "load_error_pages",
    "negotiate_language",
    "parse_accept_language",
    "render_error_page",
    "template_problem",
]

#: The language of the shipped page.
SHIPPED_LANGUAGE = "en"

#: The placeholders a template may use.
PLACEHOLDERS = frozenset(
    {
        "name",
        "status",
        "phrase",
        "title",
        "explanation",
        "detail",
        "url",
        "method",
        "client",
        "hostname",
        "date",
        "cache_mgr",
        "language",
    }
)

#: The largest template read; anything larger is a mistake.
MAX_TEMPLATE_SIZE = 256 * 1024

#: The generic template's name (without C{.html}).
_GENERIC = "error"

_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_TEMPLATE_NAME = re.compile(r"(?:ERR_[A-Z0-9_]+|error)\.html")

_UNKNOWN = ErrorInfo(
    500, "Proxy Error", "The proxy could not complete the request; contact its administrator."
)


def _read_shipped() -> string.Template:
    """Read C{squeak/templates/error.html} (at import: see L{ErrorPages})."""
    source = files("squeak").joinpath("templates/error.html").read_text(encoding="utf-8")
    return string.Template(source)


#: The shipped page, in memory from start-up: a proxy out of file
#: descriptors (EMFILE) must still answer with a page (issue 14).
_SHIPPED = _read_shipped()


# -- configuration: the [errors] table --------------------------------------------------


def _template_directory(value: object, base_dir: str) -> str:
    """A readable directory's resolved path, or C{""} for none."""
    return _readable_path(value, base_dir, kind="directory", read=os.listdir)


def _language(value: object, base_dir: str) -> str:
    """A language tag (RFC 5646, as C{Accept-Language} names them), lower case."""
    if not isinstance(value, str) or not _LANGUAGE_TAG.fullmatch(value):
        raise InvalidValueError(
            f'expected a language tag such as "en" or "pt-br", got {_show(value)}'
        )
    return value.lower()


def _contact(value: object, base_dir: str) -> str:
    """A contact shown on pages: printable, one line, up to 200 characters."""
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > 200
        or not value.isprintable()
    ):
        raise InvalidValueError(
            f"expected an e-mail address or a name (printable, up to 200 characters), "
            f"got {_show(value)}"
        )
    return value.strip()


@dataclass(frozen=True, slots=True)
class ErrorsConfig:
    """
    The C{[errors]} table: the error pages (docs/operations.md, "Error
    pages").

    @ivar error_directory: Templates that override the shipped page, by
        error name and language (Squid's C{error_directory}); C{""} for
        the shipped page only.
    @ivar error_default_language: The language of the directory's own
        templates, answered when the client's has no set.
    @ivar cache_mgr: The administrator's contact, on every page (Squid's
        C{cache_mgr}).
    """

    error_directory: str = _setting(
        default="",
        kind="path",
        doc="A directory of error page templates (ERR_NAME.html, error.html, and a "
        'subdirectory per language) overriding the shipped page; "" for none.',
        parse=_template_directory,
    )
    error_default_language: str = _setting(
        default=SHIPPED_LANGUAGE,
        kind="string: language tag",
        doc="The language of the templates directly in error_directory, answered when the "
        "client's Accept-Language matches no other set.",
        parse=_language,
    )
    cache_mgr: str = _setting(
        default="webmaster",
        kind="string",
        doc="The administrator's contact shown on every error page (as a mailto: link), "
        "as Squid's cache_mgr.",
        parse=_contact,
    )


# -- templates ------------------------------------------------------------------------


def template_problem(text: str) -> str | None:
    """
    What is wrong with a template's text, or L{None}.

    @return: A problem such as C{unknown placeholder ${user} (known: ...)}
        or C{"$" not followed by a placeholder at line 3}.
    """
    template = string.Template(text)
    if not template.is_valid():
        match = template.pattern.search(text)
        while match is not None and match.group("invalid") is None:
            match = template.pattern.search(text, match.end())
        line = text.count("\n", 0, match.start("invalid")) + 1 if match else 0
        return f'"$" not followed by a placeholder name at line {line} (write "$$" for a "$")'
    unknown = sorted(set(template.get_identifiers()) - PLACEHOLDERS)
    if unknown:
        known = ", ".join(f"${{{name}}}" for name in sorted(PLACEHOLDERS))
        return f"unknown placeholder ${{{unknown[0]}}} (known: {known})"
    return None


def parse_accept_language(value: str) -> list[str]:
    """
    The language ranges of an C{Accept-Language} field (RFC 9110 §12.5.4),
    most preferred first: by q-value, then in the order sent; ranges with
    C{q=0} and malformed elements are left out.
    """
    ranked: list[tuple[float, int, str]] = []
    for index, element in enumerate(value.split(",")):
        language, _, parameters = element.partition(";")
        language = language.strip().lower()
        if not (language == "*" or _LANGUAGE_TAG.fullmatch(language)):
            continue
        weight = 1.0
        name, _, q = parameters.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(q.strip())
            except ValueError:
                continue
            if not 0.0 <= weight <= 1.0:
                continue
        if weight > 0:
            ranked.append((-weight, index, language))
    return [language for _, _, language in sorted(ranked)]


def negotiate_language(accept_language: str | None, available: list[str], default: str) -> str:
    """
    The language to answer in: the first range of C{accept_language} that
    an available set matches (exactly; by prefix, C{en} taking C{en-gb}; or
    by its own prefix, C{pt-br} taking C{pt}, RFC 4647 §3.4 lookup), else
    C{default}.

    @param available: The languages with a set, lower case.
    """
    if not accept_language:
        return default
    for language in parse_accept_language(accept_language):
        if language == "*":
            return default
        if language in available:
            return language
        longer = sorted(tag for tag in available if tag.startswith(language + "-"))
        if longer:
            return longer[0]
        while "-" in language:
            language = language.rsplit("-", 1)[0]
            if language in available:
                return language
    return default


@dataclass(frozen=True, slots=True)
class RenderedPage:
    """
    An error page ready to send.

    @ivar body: The page, UTF-8.
    @ivar language: Its language (for C{Content-Language}).
    @ivar negotiated: Whether it was chosen among several languages (so
        the answer varies by C{Accept-Language}).
    """

    body: bytes
    language: str
    negotiated: bool


@dataclass(frozen=True, slots=True)
class ErrorPages:
    """
    The templates by language and name, checked already, with the contact
    every page shows.  C{ErrorPages()} is the shipped English page alone.

    @ivar sets: Language to template name (C{ERR_NAME} or C{error}) to
        template.
    @ivar default_language: The language when the client's has no set.
    @ivar cache_mgr: The administrator's contact (Squid's C{cache_mgr}).
    """

    sets: Mapping[str, Mapping[str, string.Template]] = field(default_factory=dict)
    default_language: str = SHIPPED_LANGUAGE
    cache_mgr: str = "webmaster"

    def _template(self, language: str, name: str) -> tuple[string.Template, str]:
        """
        The template for an error in a language, and the language it is
        in: the language's own for the name, else its C{error.html}, else
        the default language's, else the shipped (English) page.
        """
        templates = self.sets.get(language, {})
        found = templates.get(name) or templates.get(_GENERIC)
        if found is not None:
            return found, language
        if language != self.default_language:
            return self._template(self.default_language, name)
        return _SHIPPED, SHIPPED_LANGUAGE

    def render(
        self,
        error: ErrorLike,
        *,
        accept_language: str | None,
        url: str,
        method: str,
        client: str,
        visible_hostname: str,
        now: float,
    ) -> RenderedPage:
        """
        Render the page for an error, in the client's language if a set
        has it.

        Every value put into the page is HTML-escaped, since the URL, the
        method and the detail may all come from a hostile client or
        origin.  The shipped page holds the error name in a comment
        (C{<!-- ERR_NAME -->}) and the detail in C{<p id="reason">}, so
        that scripts can find them.

        @param accept_language: The request's C{Accept-Language}, if any.
        @return: The page, and the language it is actually in (a set
            without a template for this error falls back to the default
            language's, then to the shipped English page).
        @param now: When the page is made, in seconds since the epoch.
        """
        available = [language for language in self.sets if language != self.default_language]
        language = self.default_language
        if available:
            language = negotiate_language(
                accept_language, [*available, self.default_language], self.default_language
            )
        template, language = self._template(language, error.name)
        info = CATALOGUE.get(error.name, _UNKNOWN)
        values = {
            "name": error.name,
            "status": str(error.status),
            "phrase": _phrase(error.status),
            "title": info.title,
            "explanation": info.explanation,
            "detail": error.detail or info.title,
            "url": url,
            "method": method,
            "client": client,
            "hostname": visible_hostname,
            "date": formatdate(now, usegmt=True),
            "cache_mgr": self.cache_mgr,
            "language": language,
        }
        escaped = {key: html.escape(value, quote=True) for key, value in values.items()}
        # A comment may not contain "--"; the name is a token, but be certain.
        escaped["name"] = escaped["name"].replace("-", "&#45;")
        page = template.substitute(escaped)
        body = page.encode("utf-8", errors="backslashreplace")
        return RenderedPage(body, language, bool(available))


def _phrase(status: int) -> str:
    """The standard reason phrase of C{status}, or C{""} when it has none."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def render_error_page(
    error: ErrorLike,
    *,
    url: str,
    method: str,
    client: str,
    visible_hostname: str,
    now: float,
) -> bytes:
    """
    The shipped English page for an error (L{ErrorPages.render} without an
    administrator's templates).
    """
    return (
        ErrorPages()
        .render(
            error,
            accept_language=None,
            url=url,
            method=method,
            client=client,
            visible_hostname=visible_hostname,
            now=now,
        )
        .body
    )


def _read_template(path: str) -> tuple[string.Template | None, str | None]:
    """
    Read and check one template file.

    @return: The template, or L{None} and the problem.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_TEMPLATE_SIZE + 1)
    except OSError as e:
        return None, f"cannot read: {e.strerror or e}"
    if len(data) > MAX_TEMPLATE_SIZE:
        return None, f"larger than {MAX_TEMPLATE_SIZE // 1024} KiB"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 (byte {e.start})"
    problem = template_problem(text)
    if problem is not None:
        return None, problem
    return string.Template(text), None


def _read_set(directory: str, problems: list[str]) -> dict[str, string.Template]:
    """The templates directly in C{directory}, by name without C{.html}."""
    templates: dict[str, string.Template] = {}
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if not _TEMPLATE_NAME.fullmatch(entry) or os.path.isdir(path):
            continue
        template, problem = _read_template(path)
        if template is None:
            problems.append(
                f"error page template {path}: {problem}; using the next template "
                "(ultimately the shipped page) instead"
            )
        else:
            templates[entry.removesuffix(".html")] = template
    return templates


def load_error_pages(
    directory: str, *, default_language: str = SHIPPED_LANGUAGE, cache_mgr: str = "webmaster"
) -> tuple[ErrorPages, list[str]]:
    """
    Read an C{error_directory}: its own templates in the default language,
    and one set per subdirectory named by a language tag.

    @param directory: The directory, or C{""} for the shipped page only.
    @return: The pages, and one line per template left out (for the log).
    """
    problems: list[str] = []
    if not directory:
        return ErrorPages(default_language=default_language, cache_mgr=cache_mgr), problems
    try:
        entries = sorted(os.listdir(directory))
    except OSError as e:
        problems.append(
            f"error_directory {directory}: cannot read: {e.strerror or e}; using the shipped page"
        )
        return ErrorPages(default_language=default_language, cache_mgr=cache_mgr), problems
    sets: dict[str, dict[str, string.Template]] = {
        default_language.lower(): _read_set(directory, problems)
    }
    for entry in entries:
        path = os.path.join(directory, entry)
        if _LANGUAGE_TAG.fullmatch(entry) and os.path.isdir(path):
            language = entry.lower()
            try:
                sets.setdefault(language, {}).update(_read_set(path, problems))
            except OSError as e:
                problems.append(f"error page set {path}: cannot read: {e.strerror or e}")
    pages = ErrorPages(
        sets={language: templates for language, templates in sets.items() if templates},
        default_language=default_language.lower(),
        cache_mgr=cache_mgr,
    )
    return pages, problems
