# -*- test-case-name: tests.test_access_auth -*-
"""
Tests for L{squeak.access.auth}: Basic credentials, htpasswd formats with
real hashes, the credentials cache and reloading a changed file.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess

import bcrypt
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squeak.access.auth import (
    Authenticator,
    CredentialCache,
    HashScheme,
    Htpasswd,
    Verification,
    apr1_md5,
    hash_password,
    parse_basic,
)


def basic(raw: bytes, scheme: bytes = b"Basic") -> bytes:
    """A C{Proxy-Authorization} value carrying C{raw} base64-encoded."""
    return scheme + b" " + base64.b64encode(raw)


BASIC = [  # (why, header value, result)
    ("RFC 7617 §2 example", b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", ("Aladdin", "open sesame")),
    ("scheme is case-insensitive", basic(b"a:b", b"bAsIc"), ("a", "b")),
    ("password may contain colons", basic(b"a:b:c::"), ("a", "b:c::")),
    ("empty password", basic(b"a:"), ("a", "")),
    ("UTF-8 (RFC 7617 §2.1)", basic("jürgen:pässword".encode()), ("jürgen", "pässword")),
    ("missing padding tolerated", b"Basic YTpi", ("a", "b")),
    ("missing padding, two short", b"Basic YTpiYw", ("a", "bc")),
    ("surrounding whitespace", b"  Basic\tYTpi  ", ("a", "b")),
    ("another scheme", b"Bearer YTpi", None),
    ("no credentials", b"Basic", None),
    ("no credentials, trailing space", b"Basic ", None),
    ("empty", b"", None),
    ("not base64", b"Basic !!!!", None),
    ("base64 of impossible length", b"Basic YTpiY", None),
    ("too much padding", b"Basic YTpi===", None),
    ("padding in the middle", b"Basic YT=pi", None),
    ("no colon", basic(b"alice"), None),
    ("empty user", basic(b":secret"), None),
    ("not UTF-8", basic(b"\xff:x"), None),
    ("control character in the password", basic(b"a:b\nc"), None),
    ("NUL in the user", basic(b"a\x00:b"), None),
    ("two tokens", b"Basic YTpi YTpi", None),
    ("auth-params instead of token68", b'Basic realm="x"', None),
]

#: Made with C{openssl passwd -apr1 -salt SALT PASSWORD}.
APR1 = [
    ("abcdefgh", b"secret", "$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/"),
    ("s4lt", b"pass:word", "$apr1$s4lt$L2oHvlYjRijEU5TQv1P.E/"),
    ("12345678", b"", "$apr1$12345678$sHuPAw7VA9xjRbJz7zKV7/"),
    ("xyz", b"0123456789abcdefghijklmnop", "$apr1$xyz$Nq.eBq0.tw4mwbGecJSdz."),
    ("aB./", "pässwörd".encode(), "$apr1$aB./$IXE2de2IjjVluBZby7rjr/"),
]

#: Made with C{htpasswd -nbs bob secret} and C{htpasswd -nbm carol secret}.
SHA_SECRET = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="
APR1_SECRET = "$apr1$9F9MYea5$YQ7D8Iee07khVHdAxfJ6W1"


def _bcrypt(password: bytes, prefix: bytes = b"2b") -> str:
    """A bcrypt hash at the lowest cost, with the given prefix."""
    return bcrypt.hashpw(password, bcrypt.gensalt(4, prefix=prefix)).decode()


class BasicTests(SynchronousTestCase):
    """
    Tests for L{parse_basic}.
    """

    def test_table(self) -> None:
        """
        Well-formed Basic credentials parse; anything malformed is L{None}.
        """
        wrong = [
            (why, got, want) for why, value, want in BASIC if (got := parse_basic(value)) != want
        ]
        self.assertEqual(wrong, [])

    @given(st.binary(max_size=200))
    def test_never_raises(self, value: bytes) -> None:
        """
        Arbitrary bytes never raise: the proxy answers 407, never 500.
        """
        result = parse_basic(value)
        self.assertTrue(result is None or isinstance(result, tuple))

    @given(st.binary(max_size=100))
    def test_never_raises_on_basic_garbage(self, raw: bytes) -> None:
        """
        Arbitrary decoded credentials never raise either.
        """
        result = parse_basic(basic(raw))
        self.assertTrue(result is None or isinstance(result, tuple))

    @given(
        st.text(
            st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=":"),
            min_size=1,
        ),
        st.text(st.characters(blacklist_categories=("Cc", "Cs"))),
    )
    def test_round_trip(self, user: str, password: str) -> None:
        """
        Any user without a colon and any password, without control
        characters, come back as they were encoded.
        """
        self.assertEqual(parse_basic(basic(f"{user}:{password}".encode())), (user, password))


class HashTests(SynchronousTestCase):
    """
    Tests for the hash schemes.
    """

    def test_apr1_vectors(self) -> None:
        """
        L{apr1_md5} reproduces OpenSSL's C{-apr1} output.
        """
        wrong = [
            (salt, got, want)
            for salt, password, want in APR1
            if (got := apr1_md5(password, salt)) != want
        ]
        self.assertEqual(wrong, [])

    def test_apr1_against_openssl(self) -> None:
        """
        L{apr1_md5} agrees with C{openssl passwd -apr1} run now.
        """
        if shutil.which("openssl") is None:
            raise self.skipTest("openssl is not installed")
        want = subprocess.run(
            ["openssl", "passwd", "-apr1", "-salt", "Zq9.x/", "a long:pass phrase"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        self.assertEqual(apr1_md5(b"a long:pass phrase", "Zq9.x/"), want)

    def test_hash_password(self) -> None:
        """
        L{hash_password} makes an Apache-style C{$2y$} bcrypt hash that
        verifies.
        """
        hashed = hash_password("s3cret", rounds=4)
        entry = Htpasswd.parse(f"alice:{hashed}\n".encode(), "f").entries["alice"]
        self.assertEqual(
            (hashed[:7], entry.scheme, entry.verify("s3cret"), entry.verify("s3creT")),
            ("$2y$04$", HashScheme.BCRYPT, True, False),
        )

    def test_hash_password_refuses(self) -> None:
        """
        Empty passwords and passwords longer than bcrypt reads are refused.
        """
        errors = []
        for password in ("", "x" * 73, "é" * 37):
            try:
                hash_password(password, rounds=4)
            except ValueError as e:
                errors.append(str(e))
        self.assertEqual(
            errors,
            [
                "the password is empty",
                "the password is longer than 72 bytes, which bcrypt ignores",
                "the password is longer than 72 bytes, which bcrypt ignores",
            ],
        )


class HtpasswdTests(SynchronousTestCase):
    """
    Tests for L{Htpasswd}.
    """

    def test_formats(self) -> None:
        """
        bcrypt with each prefix, C{{SHA}} and C{$apr1$} entries verify the
        right password and refuse others; the weak ones are flagged.
        """
        lines = [
            f"b2y:{_bcrypt(b'secret').replace('$2b$', '$2y$')}",
            f"b2b:{_bcrypt(b'secret')}",
            f"b2a:{_bcrypt(b'secret', b'2a')}",
            f"sha:{SHA_SECRET}",
            f"apr:{APR1_SECRET}",
        ]
        htpasswd = Htpasswd.parse("\n".join(lines).encode(), "users")
        results = {
            user: (
                entry.scheme,
                entry.weak,
                htpasswd.verify(user, "secret"),
                htpasswd.verify(user, "Secret"),
            )
            for user, entry in htpasswd.entries.items()
        }
        self.assertEqual(
            (results, htpasswd.problems),
            (
                {
                    "b2y": (HashScheme.BCRYPT, False, True, False),
                    "b2b": (HashScheme.BCRYPT, False, True, False),
                    "b2a": (HashScheme.BCRYPT, False, True, False),
                    "sha": (HashScheme.SHA, True, True, False),
                    "apr": (HashScheme.APR1, True, True, False),
                },
                (),
            ),
        )

    def test_htpasswd_tool(self) -> None:
        """
        Entries written by Apache's C{htpasswd} verify, when it is installed.
        """
        if shutil.which("htpasswd") is None:
            raise self.skipTest("htpasswd is not installed")
        lines = b""
        for flag in ("-B", "-s", "-m"):
            lines += (
                subprocess.run(
                    ["htpasswd", "-nb", "-C", "4", flag, f"user{flag}", "pa:ss"],
                    capture_output=True,
                    check=True,
                    timeout=10,
                ).stdout.strip()
                + b"\n"
            )
        htpasswd = Htpasswd.parse(lines, "f")
        self.assertEqual(
            [htpasswd.verify(f"user{flag}", "pa:ss") for flag in ("-B", "-s", "-m")],
            [True, True, True],
        )

    def test_unknown_user(self) -> None:
        """
        An unknown user does not verify, whatever the password.
        """
        htpasswd = Htpasswd.parse(f"sha:{SHA_SECRET}\n".encode(), "f")
        self.assertEqual(
            [htpasswd.verify("nobody", "secret"), htpasswd.verify("SHA", "secret")],
            [False, False],
        )

    def test_bcrypt_truncates_like_apache(self) -> None:
        """
        bcrypt reads only 72 bytes, and a longer password checks against
        them as Apache's hashes were made, rather than raising.
        """
        hashed = _bcrypt(b"x" * 72)
        htpasswd = Htpasswd.parse(f"a:{hashed}\n".encode(), "f")
        self.assertEqual(
            [htpasswd.verify("a", "x" * 72), htpasswd.verify("a", "x" * 80)], [True, True]
        )

    def test_problems(self) -> None:
        """
        Refused and malformed lines are reported by file and line, without
        their content; the first entry of a duplicated user is used; blank
        and comment lines are skipped.
        """
        secret_plain = "hunter2-plaintext"
        data = (
            "\n".join(
                [
                    "# users",
                    "",
                    f"plain:{secret_plain}",
                    "crypt:rqXexS6ZhobKA",
                    "md5:$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z0",
                    "sha512:$6$salt$abcdef",
                    "no colon at all hunter2",
                    ":emptyuser",
                    f"sha:{SHA_SECRET}",
                    f"sha:{APR1_SECRET}",
                    "broken:$2y$04$short",
                    "broken2:{SHA}notbase64",
                    f"trailing:{SHA_SECRET}:a comment",
                    f"crlf:{SHA_SECRET}\r",
                ]
            ).encode()
            + b"\n\xff\xfe:x\n"
        )
        htpasswd = Htpasswd.parse(data, "users")
        self.assertEqual(
            (sorted(htpasswd.entries), htpasswd.problems),
            (
                ["crlf", "sha", "trailing"],
                (
                    "users:3: user plain: plaintext or crypt() passwords are refused (use "
                    "bcrypt); entry ignored",
                    "users:4: user crypt: plaintext or crypt() passwords are refused (use "
                    "bcrypt); entry ignored",
                    "users:5: user md5: unsupported hash scheme $1$ (use bcrypt); entry ignored",
                    "users:6: user sha512: unsupported hash scheme $6$ (use bcrypt); entry "
                    "ignored",
                    "users:7: malformed line (expected user:hash), ignored",
                    "users:8: malformed line (expected user:hash), ignored",
                    "users:10: user sha already has an entry on line 9; this one is ignored",
                    "users:11: user broken: malformed hash; entry ignored",
                    "users:12: user broken2: malformed hash; entry ignored",
                    "users:15: not UTF-8, line ignored",
                ),
            ),
        )
        self.assertEqual(
            [htpasswd.verify(u, "secret") for u in ("sha", "trailing", "crlf")], [True] * 3
        )
        self.assertNotIn(secret_plain, "".join(htpasswd.warnings))
        self.assertNotIn("hunter2", "".join(htpasswd.warnings))

    def test_warnings(self) -> None:
        """
        The warnings list the problems, then each weak entry, naming the
        user but not the hash.
        """
        htpasswd = Htpasswd.parse(f"x\nsha:{SHA_SECRET}\n".encode(), "users")
        self.assertEqual(
            htpasswd.warnings,
            [
                "users:1: malformed line (expected user:hash), ignored",
                "users:2: user sha has a weak {SHA} hash; set a bcrypt one with: "
                "python -m squeak passwd FILE USER",
            ],
        )

    def test_entry_repr_hides_hash(self) -> None:
        """
        An entry's repr does not show its hash.
        """
        htpasswd = Htpasswd.parse(f"sha:{SHA_SECRET}\n".encode(), "f")
        self.assertNotIn("5en6G6", repr(htpasswd))


class CredentialCacheTests(SynchronousTestCase):
    """
    Tests for L{CredentialCache}.
    """

    def test_ttl(self) -> None:
        """
        A success is remembered for the TTL, a failure for the shorter
        failure TTL; then they must be verified again.
        """
        cache = CredentialCache(ttl=60, failure_ttl=5)
        cache.store("alice", "right", True, now=100)
        cache.store("alice", "wrong", False, now=100)
        self.assertEqual(
            [
                cache.lookup("alice", "right", 159.9),
                cache.lookup("alice", "wrong", 104.9),
                cache.lookup("alice", "wrong", 105),
                cache.lookup("alice", "right", 160),
                cache.lookup("alice", "other", 100),
                len(cache),
            ],
            [True, False, None, None, None, 0],
        )

    def test_keys_are_not_plaintext(self) -> None:
        """
        Neither the user nor the password is stored, only a keyed digest.
        """
        cache = CredentialCache(ttl=60)
        cache.store("alice", "hunter2", True, now=0)
        (key,) = cache._entries
        self.assertEqual(len(key), 32)
        self.assertNotIn(b"hunter2", key)
        self.assertNotIn(b"alice", key)

    def test_user_and_password_are_not_confused(self) -> None:
        """
        Moving characters between user and password gives another key.
        """
        cache = CredentialCache(ttl=60)
        cache.store("ab", "c", True, now=0)
        self.assertIsNone(cache.lookup("a", "bc", 1))

    def test_bounded(self) -> None:
        """
        The cache holds at most C{max_entries}, dropping the oldest.
        """
        cache = CredentialCache(ttl=60, max_entries=2)
        for n in range(3):
            cache.store(f"u{n}", "p", True, now=n)
        self.assertEqual([cache.lookup(f"u{n}", "p", 3) for n in range(3)], [None, True, True])

    def test_clear(self) -> None:
        """
        L{CredentialCache.clear} forgets everything.
        """
        cache = CredentialCache(ttl=60)
        cache.store("a", "p", True, now=0)
        cache.clear()
        self.assertIsNone(cache.lookup("a", "p", 1))


class AuthenticatorTests(SynchronousTestCase):
    """
    Tests for L{Authenticator}: the cache in front of the file, and reloads.
    """

    def setUp(self) -> None:
        """Write an htpasswd file with alice (bcrypt) and bob ({SHA})."""
        self.path = self.mktemp()
        self._write(f"alice:{_bcrypt(b'one')}\nbob:{SHA_SECRET}\n", mtime=1_000_000)
        self.warnings: list[str] = []
        self.auth = Authenticator(self.path, ttl=3600, on_warning=self.warnings.append)

    def _write(self, text: str, mtime: int) -> None:
        """Replace the file's contents and set its modification time."""
        with open(self.path, "w") as f:
            f.write(text)
        os.utime(self.path, (mtime, mtime))

    def test_cache_in_front(self) -> None:
        """
        The first check verifies; later ones within the TTL are answered
        from the cache, so changing the file's users without the file
        looking changed is not seen (which is what the stat check is for).
        """
        self.assertEqual(
            (
                self.auth.cached("alice", "one", 0),
                self.auth.check("alice", "one", 0),
                self.auth.cached("alice", "one", 10),
                self.auth.check("alice", "two", 10),
                self.auth.cached("alice", "two", 11),
                self.auth.cached("alice", "one", 3600),
            ),
            (None, True, True, False, False, None),
        )

    def test_weak_entries_warned_once(self) -> None:
        """
        Loading reports the weak entries through C{on_warning}, once.
        """
        self.auth.check("bob", "secret", 0)
        self.auth.check("bob", "secret", 5)
        self.assertEqual(
            self.warnings,
            [
                f"{self.path}:2: user bob has a weak {{SHA}} hash; set a bcrypt one with: "
                "python -m squeak passwd FILE USER"
            ],
        )

    def test_file_change_empties_cache(self) -> None:
        """
        When the file changes, the next check (at most once a second)
        reloads it and forgets the cached outcomes: a removed user is
        refused, a new password accepted.
        """
        self.assertTrue(self.auth.check("alice", "one", 0))
        self._write(f"alice:{_bcrypt(b'two')}\n", mtime=1_000_100)
        self.assertEqual(
            [
                self.auth.check("alice", "one", 0.5),
                self.auth.check("alice", "one", 1.0),
                self.auth.check("alice", "two", 1.1),
                self.auth.check("bob", "secret", 1.2),
            ],
            [True, False, True, False],
        )

    def test_same_size_same_second(self) -> None:
        """
        A change keeping the size and the modification time is still seen
        when the file is replaced (a new inode), as C{passwd} does.
        """
        self.assertTrue(self.auth.check("bob", "secret", 0))
        replacement = self.path + ".new"
        with open(replacement, "w") as f:
            f.write(f"alice:{_bcrypt(b'one')}\nbob:{{SHA}}{'A' * 27}=\n")
        os.utime(replacement, (1_000_000, 1_000_000))
        os.replace(replacement, self.path)
        self.assertFalse(self.auth.check("bob", "secret", 2))

    def test_stale_verification_not_cached(self) -> None:
        """
        A verification made against the file before a reload is not cached
        after it.
        """
        result = self.auth.verify("alice", "one")
        self._write("", mtime=1_000_200)
        self.auth.refresh(now=5)
        self.auth.record("alice", "one", result, now=5)
        self.assertEqual(
            (result, self.auth.cached("alice", "one", 5)), (Verification(True, 0), None)
        )

    def test_unreadable_file(self) -> None:
        """
        A file that disappears leaves no user able to log in (fail closed),
        with a warning.
        """
        os.unlink(self.path)
        self.assertEqual(
            (self.auth.check("alice", "one", 10), self.warnings[-1]),
            (False, f"{self.path}: cannot read: No such file or directory; no user can log in"),
        )
