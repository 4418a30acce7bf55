# -*- test-case-name: tests.test_access_auth -*-
"""
Proxy authentication: C{Proxy-Authorization: Basic}, an htpasswd file, and a
cache of verified credentials.

  - L{parse_basic} (pure) reads the header (RFC 7617); anything malformed is
    L{None}, which the proxy answers with 407, never 500.
  - L{Htpasswd} reads a file as Apache's C{htpasswd} writes it. bcrypt
    (C{$2y$}, C{$2b$}, C{$2a$}) is the format to use; C{{SHA}} and
    C{$apr1$} (Apache MD5) are accepted but reported as weak; plaintext,
    C{crypt()} and other schemes are refused, their entries ignored.
    Problems are reported by file and line, never with the line's content.
  - L{Htpasswd.verify} is slow by design (bcrypt costs 10-300 ms): the proxy
    calls it through a thread (C{deferToThread}), never on the reactor.
  - L{CredentialCache} (pure: time is passed in) remembers verified
    credentials for a TTL, keyed by a keyed hash of user and password, never
    the plaintext.
  - L{Authenticator} ties them together: a fast, synchronous cache lookup
    that also notices when the htpasswd file changed (by C{stat}, at most
    once a second) and then reloads it and empties the cache; the slow
    verification for the thread; and recording its result.

Comparisons of secrets are constant-time (L{hmac.compare_digest}, and
bcrypt's own C{checkpw}). No password, hash or header value is ever put in a
message.

This module imports no Twisted.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import bcrypt

__all__ = [
    "Authenticator",
    "CredentialCache",
    "HashScheme",
    "Htpasswd",
    "HtpasswdEntry",
    "Verification",
    "apr1_md5",
    "hash_password",
    "parse_basic",
    "set_password",
]

# --- Basic credentials (RFC 7617) ----------------------------------------------------

# RFC 7235 §2.1: credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ];
# token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
# Basic's token68 is base64 (RFC 7617 §2), so only its alphabet is accepted.
_BASIC = re.compile(rb"[ \t]*([A-Za-z0-9!#$%&'*+.^_`|~-]+)[ \t]+([A-Za-z0-9+/]+)(=*)[ \t]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_basic(header_value: bytes) -> tuple[str, str] | None:
    """
    Parse a C{Proxy-Authorization: Basic} value into user and password.

    RFC 7617 §2: the scheme name is case-insensitive; the credentials are
    the base64 of C{user-id ":" password} in UTF-8; the user-id cannot
    contain a colon but the password can (so the split is at the first
    colon); neither may contain control characters. Missing base64 padding
    is tolerated.

    @return: C{(user, password)}, or L{None} if the value is not well-formed
        Basic credentials: another scheme, bad base64, not UTF-8, no colon,
        an empty user, or a control character.
    """
    match = _BASIC.fullmatch(header_value)
    if match is None or match.group(1).lower() != b"basic":
        return None
    token = match.group(2)
    if len(token) % 4 == 1 or len(match.group(3)) > 2:
        return None
    try:
        decoded = base64.b64decode(token + b"=" * (-len(token) % 4), validate=True)
        text = decoded.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = text.partition(":")
    if not colon or not user or _CONTROL.search(text):
        return None
    return user, password


# --- Hash schemes --------------------------------------------------------------------

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _to64(value: int, count: int) -> str:
    """Encode the low bits of C{value} as C{count} crypt-base64 characters."""
    out = []
    for _ in range(count):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return "".join(out)


def apr1_md5(password: bytes, salt: str) -> str:
    """
    Apache's MD5 password hash, C{$apr1$}: Poul-Henning Kamp's md5crypt
    with the magic C{$apr1$} (apr_md5.c, C{apr_md5_encode}). Weak: it is
    fast to brute-force; accepted only for existing files.

    @param salt: Up to 8 characters; more are ignored.
    @return: The whole hash, C{$apr1$SALT$HASH}.
    """
    magic = b"$apr1$"
    salt_bytes = salt[:8].encode("ascii")
    alternate = hashlib.md5(password + salt_bytes + password).digest()
    context = password + magic + salt_bytes
    for remaining in range(len(password), 0, -16):
        context += alternate[: min(16, remaining)]
    length = len(password)
    while length:
        context += b"\0" if length & 1 else password[:1]
        length >>= 1
    final = hashlib.md5(context).digest()
    for i in range(1000):
        round_input = password if i & 1 else final
        if i % 3:
            round_input += salt_bytes
        if i % 7:
            round_input += password
        round_input += final if i & 1 else password
        final = hashlib.md5(round_input).digest()
    encoded = "".join(
        _to64((final[a] << 16) | (final[b] << 8) | final[c], 4)
        for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
    )
    encoded += _to64(final[11], 2)
    return f"$apr1${salt[:8]}${encoded}"


#: bcrypt uses only the first 72 bytes of a password; Apache's htpasswd
#: truncates silently, and verification does the same to match its hashes.
BCRYPT_MAX_PASSWORD = 72


def hash_password(password: str, rounds: int = 12) -> str:
    """
    Hash a password with bcrypt as Apache's C{htpasswd -B} does, with the
    C{$2y$} prefix.

    @param rounds: The bcrypt cost, 4 to 31; 12 takes a few hundred
        milliseconds.
    @raise ValueError: If the password is empty or longer than 72 bytes in
        UTF-8 (bcrypt would ignore the rest).
    """
    data = password.encode("utf-8")
    if not data:
        raise ValueError("the password is empty")
    if len(data) > BCRYPT_MAX_PASSWORD:
        raise ValueError(
            f"the password is longer than {BCRYPT_MAX_PASSWORD} bytes, which bcrypt ignores"
        )
    hashed = bcrypt.hashpw(data, bcrypt.gensalt(rounds, prefix=b"2b")).decode("ascii")
    return "$2y$" + hashed[len("$2b$") :]


class HashScheme(enum.Enum):
    """The accepted htpasswd hash schemes."""

    BCRYPT = "bcrypt"
    SHA = "{SHA}"
    APR1 = "apr1"


_BCRYPT_HASH = re.compile(r"\$2[aby]\$(?:0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_SHA_HASH = re.compile(r"\{SHA\}[A-Za-z0-9+/]{27}=")
_APR1_HASH = re.compile(r"\$apr1\$([./0-9A-Za-z]{0,8})\$[./0-9A-Za-z]{22}")
_SCHEME_ID = re.compile(r"\$([A-Za-z0-9]{1,8})\$")

#: Verified against when the user is unknown, so that an unknown user costs
#: about as much time as a wrong password.
_DUMMY_BCRYPT = b"$2b$10$xYSyfLjx5Jmi5722ToUij.grLhfUYKVK8JqhBto1KC8V3EmIcJyra"


@dataclass(frozen=True, slots=True)
class HtpasswdEntry:
    """
    One usable htpasswd line.

    @ivar user: The user name.
    @ivar scheme: How the password is hashed.
    @ivar hashed: The hash as written.
    @ivar line: The 1-based line in the file.
    """

    user: str
    scheme: HashScheme
    hashed: str = field(repr=False)
    line: int

    @property
    def weak(self) -> bool:
        """Whether the scheme is fast to brute-force (C{{SHA}}, C{$apr1$})."""
        return self.scheme is not HashScheme.BCRYPT

    def verify(self, password: str) -> bool:
        """
        Check C{password} in constant time; slow for bcrypt (run it in a
        thread).
        """
        data = password.encode("utf-8")
        if self.scheme is HashScheme.BCRYPT:
            stored = self.hashed.encode("ascii")
            if stored.startswith(b"$2y$"):
                stored = b"$2b$" + stored[4:]
            return bcrypt.checkpw(data[:BCRYPT_MAX_PASSWORD], stored)
        if self.scheme is HashScheme.SHA:
            computed = "{SHA}" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")
        else:
            salt = self.hashed[len("$apr1$") :].split("$", 1)[0]
            computed = apr1_md5(data, salt)
        return hmac.compare_digest(computed.encode("ascii"), self.hashed.encode("ascii"))


def _classify(hashed: str) -> HashScheme | str:
    """The scheme of a hash, or why it is refused."""
    if _BCRYPT_HASH.fullmatch(hashed):
        return HashScheme.BCRYPT
    if _SHA_HASH.fullmatch(hashed):
        return HashScheme.SHA
    if _APR1_HASH.fullmatch(hashed):
        return HashScheme.APR1
    if hashed.startswith(("$2", "{SHA}", "$apr1$")):
        return "malformed hash"
    scheme = _SCHEME_ID.match(hashed)
    if scheme is not None:
        return f"unsupported hash scheme ${scheme.group(1)}$ (use bcrypt)"
    return "plaintext or crypt() passwords are refused (use bcrypt)"


@dataclass(frozen=True, slots=True)
class Htpasswd:
    """
    The usable entries of an htpasswd file, and its problems.

    @ivar path: The file, for messages.
    @ivar entries: Usable entries by user name; the first line for a user
        wins, as in Apache's mod_authn_file.
    @ivar problems: One message per ignored line, C{path:line: why}.
    """

    path: str
    entries: dict[str, HtpasswdEntry]
    problems: tuple[str, ...]

    @classmethod
    def parse(cls, data: bytes, path: str) -> Htpasswd:
        """
        Parse the contents of an htpasswd file: C{user:hash} lines (anything
        after a second colon is ignored, as Apache does); blank lines and
        lines starting with C{#} are skipped.
        """
        entries: dict[str, HtpasswdEntry] = {}
        problems: list[str] = []
        for number, raw in enumerate(data.split(b"\n"), start=1):
            try:
                line = raw.rstrip(b"\r").decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{path}:{number}: not UTF-8, line ignored")
                continue
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            user, colon, rest = line.partition(":")
            if not colon or not user or _CONTROL.search(user):
                problems.append(f"{path}:{number}: malformed line (expected user:hash), ignored")
                continue
            scheme = _classify(rest.split(":", 1)[0].strip())
            if isinstance(scheme, str):
                problems.append(f"{path}:{number}: user {user}: {scheme}; entry ignored")
            elif user in entries:
                first = entries[user].line
                problems.append(
                    f"{path}:{number}: user {user} already has an entry on line {first}; "
                    "this one is ignored"
                )
            else:
                entries[user] = HtpasswdEntry(user, scheme, rest.split(":", 1)[0].strip(), number)
        return cls(path, entries, tuple(problems))

    @classmethod
    def load(cls, path: str) -> Htpasswd:
        """
        Read and parse the file at C{path}.

        @raise OSError: If it cannot be read.
        """
        with open(path, "rb") as f:
            return cls.parse(f.read(), path)

    @property
    def warnings(self) -> list[str]:
        """The problems, then one line per weak entry, for the log."""
        weak = [
            f"{self.path}:{e.line}: user {e.user} has a weak {e.scheme.value} hash; "
            "set a bcrypt one with: python -m squeak passwd FILE USER"
            for e in self.entries.values()
            if e.weak
        ]
        return [*self.problems, *weak]

    def verify(self, user: str, password: str) -> bool:
        """
        Check a user's password. Slow (bcrypt): call it in a thread. An
        unknown user costs a bcrypt check too, so timing does not tell
        which users exist.
        """
        entry = self.entries.get(user)
        if entry is None:
            bcrypt.checkpw(password.encode("utf-8")[:BCRYPT_MAX_PASSWORD], _DUMMY_BCRYPT)
            return False
        return entry.verify(password)


# --- Caching verified credentials ------------------------------------------------------


class CredentialCache:
    """
    Remembers the outcome of password checks for a while, so that a
    keep-alive client costs one bcrypt check per TTL, not one per request.

    Keys are an HMAC-SHA256 of the user and password under a random
    per-process key: the plaintext is never stored, and the keys cannot be
    brute-forced without that key. Successes last C{ttl}; failures last
    C{failure_ttl} (short), enough to absorb a client repeating the same
    wrong password on every request without letting a fixed entry wait
    long. The cache holds at most C{max_entries}, dropping the oldest.

    Time is passed in (C{now}, in seconds); nothing here reads the clock.
    """

    def __init__(self, ttl: float, failure_ttl: float = 10.0, max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._failure_ttl = min(failure_ttl, ttl)
        self._max = max_entries
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, tuple[float, bool]] = OrderedDict()

    def _digest(self, user: str, password: str) -> bytes:
        """The cache key for a user and password."""
        data = user.encode("utf-8") + b"\0" + password.encode("utf-8")
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def lookup(self, user: str, password: str, now: float) -> bool | None:
        """
        @return: The remembered outcome, or L{None} if there is none (or it
            expired): the password must be verified.
        """
        key = self._digest(user, password)
        found = self._entries.get(key)
        if found is None:
            return None
        expires, ok = found
        if now >= expires:
            del self._entries[key]
            return None
        return ok

    def store(self, user: str, password: str, ok: bool, now: float) -> None:
        """Remember the outcome of a check made at C{now}."""
        lifetime = self._ttl if ok else self._failure_ttl
        if lifetime <= 0:
            return
        key = self._digest(user, password)
        self._entries[key] = (now + lifetime, ok)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (the htpasswd file changed)."""
        self._entries.clear()

    def __len__(self) -> int:
        """How many outcomes are remembered."""
        return len(self._entries)


def _file_identity(path: str) -> tuple[int, int, int, int] | None:
    """What tells a changed file apart: device, inode, size, mtime (ns)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class Verification:
    """
    The result of L{Authenticator.verify}, to hand to L{Authenticator.record}.

    @ivar ok: Whether the password is right.
    @ivar generation: Which load of the file it was checked against; a
        result from before a reload is not cached.
    """

    ok: bool
    generation: int


class Authenticator:
    """
    Basic authentication against an htpasswd file, with a credentials cache.

    Use from the reactor thread::

        ok = auth.cached(user, password, now)          # fast
        if ok is None:
            result = await deferToThread(auth.verify, user, password)  # slow
            auth.record(user, password, result, now)
            ok = result.ok

    L{cached} checks, at most once per C{check_interval} seconds, whether the
    file changed (device, inode, size or modification time); if so it reloads
    it, empties the cache and reports the new file's warnings through
    C{on_warning}. A file that cannot be read has no users (fail closed).
    """

    def __init__(
        self,
        path: str,
        ttl: float,
        failure_ttl: float = 10.0,
        check_interval: float = 1.0,
        on_warning: Callable[[str], object] = lambda message: None,
    ) -> None:
        """
        Load the file now; its warnings go to C{on_warning}.
        """
        self.path = path
        self._cache = CredentialCache(ttl, failure_ttl)
        self._interval = check_interval
        self._warn = on_warning
        self._checked: float | None = None
        self._generation = 0
        self._identity = _file_identity(path)
        self.htpasswd = self._load()

    def _load(self) -> Htpasswd:
        """Read the file, reporting its warnings; no users if unreadable."""
        try:
            htpasswd = Htpasswd.load(self.path)
        except OSError as e:
            self._warn(f"{self.path}: cannot read: {e.strerror or e}; no user can log in")
            return Htpasswd(self.path, {}, ())
        for warning in htpasswd.warnings:
            self._warn(warning)
        return htpasswd

    def refresh(self, now: float) -> bool:
        """
        Reload the file if it changed, checking at most once per interval.

        @return: Whether it was reloaded.
        """
        if self._checked is not None and now - self._checked < self._interval:
            return False
        self._checked = now
        identity = _file_identity(self.path)
        if identity == self._identity:
            return False
        self._identity = identity
        self.htpasswd = self._load()
        self._generation += 1
        self._cache.clear()
        return True

    def cached(self, user: str, password: str, now: float) -> bool | None:
        """
        The cached outcome for these credentials, or L{None} if they must be
        verified. Fast; call it on the reactor thread.
        """
        self.refresh(now)
        return self._cache.lookup(user, password, now)

    def verify(self, user: str, password: str) -> Verification:
        """
        Check the password against the current file. Slow: call it in a
        thread. Reads only immutable state, so it is safe to run while the
        reactor thread reloads the file.
        """
        generation = self._generation
        return Verification(self.htpasswd.verify(user, password), generation)

    def record(self, user: str, password: str, result: Verification, now: float) -> None:
        """Cache the result of L{verify}, unless the file was reloaded since."""
        if result.generation == self._generation:
            self._cache.store(user, password, result.ok, now)

    def check(self, user: str, password: str, now: float) -> bool:
        """
        L{cached}, then L{verify} and L{record} if needed, all in the
        calling thread: for tools and tests, not the reactor.
        """
        ok = self.cached(user, password, now)
        if ok is None:
            result = self.verify(user, password)
            self.record(user, password, result, now)
            ok = result.ok
        return ok


# --- Writing the file ---------------------------------------------------------------


def set_password(path: str, user: str, hashed: str) -> bool:
    """
    Add or update C{user}'s entry in the htpasswd file at C{path}, keeping
    every other line as it is, and replace the file atomically (a temporary
    file in the same directory, then a rename), keeping its permissions; a
    new file is readable by its owner only.

    @return: Whether the user already had an entry.
    @raise ValueError: If the user name is empty or holds a colon or a
        control character.
    @raise OSError: If the file cannot be read or written.
    """
    if not user or ":" in user or _CONTROL.search(user):
        raise ValueError("a user name must be non-empty, without ':' or control characters")
    try:
        with open(path, "rb") as f:
            data = f.read()
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        data, mode = b"", 0o600
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    prefix = user.encode("utf-8") + b":"
    new_line = prefix + hashed.encode("ascii")
    found = False
    for i, line in enumerate(lines):
        if line.startswith(prefix) and not found:
            lines[i] = new_line
            found = True
    if not found:
        lines.append(new_line)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = _temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return found


def _temporary(directory: str, name: str) -> tuple[int, str]:
    """Create a new private file beside the target; return its fd and path."""
    while True:
        path = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), path
        except FileExistsError:
            continue
