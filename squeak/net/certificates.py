# -*- test-case-name: tests.test_net_certificates -*-
"""
TLS for the accelerator's HTTPS listeners: several certificates on one
port, each served to the clients that name one of its host names in the
TLS Server Name Indication (RFC 6066 §3), the first to clients that name
none or another.

pyOpenSSL calls the server-name callback of the listener's context during
the handshake; the callback switches the connection to the context of the
certificate that covers the name, so the client sees that certificate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509
from OpenSSL.crypto import FILETYPE_PEM
from OpenSSL.SSL import Connection, Context
from OpenSSL.SSL import Error as OpenSSLError
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    KeyPair,
    PrivateCertificate,
    TLSVersion,
)
from zope.interface import implementer

__all__ = ["CertificateError", "SniCertificates", "certificate_options", "names_match"]

_load_private: Callable[..., Any] = PrivateCertificate.load


class CertificateError(Exception):
    """A certificate or its key cannot be used (the message says why)."""


def names_match(pattern: str, name: str) -> bool:
    """
    Whether a certificate name covers a host name: equal (case-insensitive),
    or a wildcard C{*.example.com} standing for exactly one label (RFC 6125
    §6.4.3).
    """
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def certificate_options(certificate_path: str, key_path: str) -> CertificateOptions:
    """
    Server TLS settings for a PEM certificate chain (the leaf first) and
    its key, TLS 1.2 or newer only: the HTTPS proxy port's and each
    accelerator certificate's.

    @raise CertificateError: If the files do not hold a certificate and its
        key (the message names both files and says why).
    """
    try:
        return _options(_read_chain(certificate_path), key_path)
    except (OSError, ValueError, OpenSSLError) as error:
        raise CertificateError(f"cannot use {certificate_path} with {key_path}: {error}") from None


def _read_chain(certificate_path: str) -> list[bytes]:
    """The PEM certificate blocks of a chain file, the leaf first."""
    with open(certificate_path, "rb") as handle:
        chain_pem = handle.read()
    blocks: list[bytes] = re.findall(
        rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", chain_pem, re.DOTALL
    )
    if not blocks:
        raise ValueError("no PEM certificate in it")
    return blocks


def _options(blocks: list[bytes], key_path: str) -> CertificateOptions:
    with open(key_path, "rb") as handle:
        key_pem = handle.read()
    key = KeyPair.load(key_pem, FILETYPE_PEM)
    leaf = _load_private(blocks[0], key, FILETYPE_PEM)
    extra = [Certificate.loadPEM(block).original for block in blocks[1:]]
    return CertificateOptions(
        privateKey=key.original,
        certificate=leaf.original,
        extraCertChain=extra,
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )


def _load(certificate_path: str, key_path: str) -> tuple[Context, list[str]]:
    """
    The server context of one chain and key (TLS 1.2 or newer), and the
    names its leaf covers (subjectAltName DNS names, else its common name).
    """
    try:
        blocks = _read_chain(certificate_path)
        context: Context = _options(blocks, key_path).getContext()
        parsed = x509.load_pem_x509_certificate(blocks[0])
    except (OSError, ValueError, OpenSSLError) as error:
        raise CertificateError(f"cannot use {certificate_path} with {key_path}: {error}") from None
    try:
        alt = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = list(alt.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = [
            str(attribute.value)
            for attribute in parsed.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        ]
    return context, names


@implementer(IOpenSSLContextFactory)
class SniCertificates:
    """
    The TLS context factory of an HTTPS accelerator listener (what
    C{listenSSL} and L{TLSMemoryBIOFactory} call C{getContext} on).
    """

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        """
        @param pairs: C{(certificate, key)} PEM paths; the first is the
            default.
        @raise CertificateError: If one cannot be used.
        """
        if not pairs:
            raise CertificateError("no certificate given")
        self._by_names = [_load(certificate, key) for certificate, key in pairs]
        self._default = self._by_names[0][0]
        self._default.set_tlsext_servername_callback(self._server_name)

    def getContext(self) -> Context:
        return self._default

    def context_for(self, name: str | None) -> Context:
        """The context whose certificate covers C{name} (the default otherwise)."""
        if name:
            for context, names in self._by_names:
                if any(names_match(pattern, name) for pattern in names):
                    return context
        return self._default

    def _server_name(self, connection: Connection) -> None:
        raw = connection.get_servername()
        name = raw.decode("ascii", "replace") if raw else None
        context = self.context_for(name)
        if context is not self._default:
            connection.set_context(context)
