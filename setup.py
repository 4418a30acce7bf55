"""Packaging for squeak, a caching forward HTTP proxy on Twisted.

The twistd plugin lives in C{twisted/plugins/} (a namespace directory with no
C{__init__.py}, as Twisted's plugin system requires), so it is listed as a
package of its own beside C{squeak}.
"""

from setuptools import find_packages, setup

setup(
    name="squeak",
    version="0.1.0",
    description="A caching forward HTTP proxy on Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["squeak", "squeak.*"]) + ["twisted.plugins"],
    package_data={"squeak": ["py.typed", "templates/*.html"]},
    include_package_data=False,
    install_requires=[
        # >= 24.7: request-smuggling fixes in twisted.web's HTTP server.
        "twisted[tls] >= 24.7.0, < 27",
        "service-identity >= 24.1.0",
        "pyopenssl >= 24.0.0",
        "diskcache >= 5.6, < 6",
        "typing-extensions >= 4.7",
        "bcrypt >= 4.1",
        # The [metrics] listener (issue 16): Prometheus's own library writes
        # the text exposition format (escaping, histogram series, _total
        # suffixes) and its parser checks it in the tests; pure Python.
        "prometheus-client >= 0.17",
    ],
    extras_require={
        # pypac: a real PAC engine (on the dukpy JavaScript interpreter)
        # that runs the generated proxy.pac in tests.
        # gunicorn: the accelerator tests put squeak in front of a real one.
        "test": [
            "hypothesis >= 6.100",
            "setuptools >= 68",
            "wheel",
            "pypac >= 0.16",
            "gunicorn >= 22",
        ],
        # Pinned: CI runs them, and a new release must not fail a clean clone.
        "dev": ["ruff == 0.17.6", "mypy == 2.4.1", "hypothesis >= 6.100"],
    },
    entry_points={"console_scripts": ["squeak = squeak.cli:main"]},
    zip_safe=False,
)
