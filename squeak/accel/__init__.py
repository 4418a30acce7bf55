"""
Accelerator (reverse proxy) mode: squeak in front of a web application.

The decisions are pure and live here: the configuration (L{config}), which
site and which origin pool answer a request and with what path
(L{routing}), and the fields the application sees and sends back
(L{headers}).  The I/O is in L{squeak.proxy.accel} and
L{squeak.proxy.pools}.
"""
