"""
The accelerator's HTTPS listeners (squeak/net/certificates.py): several
certificates on one port, chosen by the name the client sends (SNI).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from squeak.net.certificates import CertificateError, SniCertificates, names_match
from tests.accelharness import AccelTestCase, in_thread
from tests.origins import Origin
from tests.tlsfixtures import make_server_files


class NamesMatchTests(SynchronousTestCase):
    def test_table(self) -> None:
        """Exact names, and wildcards standing for one label (RFC 6125 §6.4.3)."""
        cases = [
            ("app.example", "APP.example", True),
            ("app.example", "app.example.", True),
            ("app.example", "www.app.example", False),
            ("*.app.example", "www.app.example", True),
            ("*.app.example", "a.b.app.example", False),
            ("*.app.example", "app.example", False),
        ]
        wrong = [c for c in cases if names_match(c[0], c[1]) is not c[2]]
        self.assertEqual(wrong, [])

    def test_unusable_files(self) -> None:
        """A missing file is an error naming it."""
        with self.assertRaises(CertificateError) as caught:
            SniCertificates([("/nonexistent.pem", "/nonexistent.key")])
        self.assertIn("/nonexistent.pem", str(caught.exception))


class SniListenerTests(AccelTestCase):
    async def test_certificate_by_sni(self) -> None:
        """
        Each site's certificate is served to clients naming it; requests on
        the TLS port reach the application with X-Forwarded-Proto https.
        """
        directory = Path(self.mktemp()).resolve()
        app_files = make_server_files(directory / "app", ["app.example", "*.app.example"])
        admin_files = make_server_files(
            directory / "admin", ["admin.example"], ca_name="another test CA"
        )
        origin = Origin(reactor)
        number = origin.listen()
        self.addCleanup(origin.port.stopListening)
        self.start_accel(
            f"""
[[accel]]
http_port = ["127.0.0.1:0"]
https_port = ["127.0.0.1:0"]
site = "app.example"
certificates = [
  {{certificate = "{app_files.certificate}", key = "{app_files.key}"}},
  {{certificate = "{admin_files.certificate}", key = "{admin_files.key}"}},
]

[accel_site."app.example"]
aliases = ["www.app.example"]
pool = "app"
[accel_site."admin.example"]
pool = "app"

[accel_pool.app]
origins = ["127.0.0.1:{number}"]
"""
        )
        tls_port = self.accel_ports[1]

        def fetch(name: str) -> tuple[str, bytes]:
            context = ssl.create_default_context()
            context.load_verify_locations(str(app_files.ca))
            context.load_verify_locations(str(admin_files.ca))
            with (
                socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname=name) as s,
            ):
                peer = s.getpeercert()
                subject = dict(item[0] for item in peer["subject"])["commonName"]
                s.sendall(
                    f"GET /echo HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode()
                )
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                return str(subject), data

        for name, expected in [
            ("app.example", "app.example"),
            ("www.app.example", "app.example"),
            ("admin.example", "admin.example"),
        ]:
            subject, data = await in_thread(fetch, name)
            self.assertEqual(subject, expected)
            self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:80])
            self.assertIn(b'"X-Forwarded-Proto", "https"', data)
