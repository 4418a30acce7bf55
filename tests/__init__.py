"""
Tests for squeak.
"""
