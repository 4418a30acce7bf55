"""
squeak's trial test suite.

Hypothesis runs with no per-example deadline and without the too-slow
health check: CI machines are shared and timing is not what these property
tests are about (speed is measured in bench/, never in tests).
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "squeak",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("squeak")
