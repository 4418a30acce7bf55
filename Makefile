# squeak: two commands on a fresh machine, `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp-install
CONFIG ?= etc/squeak.toml
TRIAL_JOBS ?= 2

.PHONY: venv run test test-fast lint typecheck format bench clean

venv: $(STAMP)

# The compat editable install keeps twisted/plugins visible to twistd (a
# PEP 660 editable install hides it); the last line rebuilds dropin.cache.
$(STAMP): setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]' --config-settings editable_mode=compat
	$(PY) -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $(STAMP)

run: venv
	$(VENV)/bin/twistd -n --pidfile= squeak --config $(CONFIG)

test: venv
	$(PY) -b -W default -m twisted.trial -j$(TRIAL_JOBS) tests

# test-fast: the tests of the pure modules only (the pure layers of
# tests/test_architecture.py: no Twisted I/O, no diskcache, no sockets), in
# a few seconds.  tests/test_architecture.py fails if this list differs from
# the test modules of the pure modules, or if one of them loads a squeak
# module that is not pure.
TEST_FAST := \
	tests.test_accel_caching \
	tests.test_accel_config \
	tests.test_accel_headers \
	tests.test_accel_routing \
	tests.test_access_acl \
	tests.test_access_auth \
	tests.test_access_purge \
	tests.test_access_rules \
	tests.test_architecture \
	tests.test_cache_directives \
	tests.test_cache_inventory \
	tests.test_cache_keys \
	tests.test_cache_policy \
	tests.test_cache_ranges \
	tests.test_config \
	tests.test_errorpages \
	tests.test_errors \
	tests.test_http_chunked \
	tests.test_http_fields \
	tests.test_http_grammar \
	tests.test_http_methods \
	tests.test_http_request \
	tests.test_http_response \
	tests.test_http_sni \
	tests.test_http_target \
	tests.test_logformat \
	tests.test_pac \
	tests.test_proxyheader \
	tests.test_stats_counters \
	tests.test_stats_pages \
	tests.test_upstream_carp \
	tests.test_upstream_group \
	tests.test_upstream_health \
	tests.test_upstream_hierarchy \
	tests.test_upstream_peers \
	tests.test_upstream_selection

test-fast: venv
	$(PY) -b -W default -m twisted.trial $(TEST_FAST)

lint: venv
	$(VENV)/bin/ruff check squeak tests bench twisted
	$(VENV)/bin/ruff format --check squeak tests bench twisted

typecheck: venv
	$(VENV)/bin/mypy squeak

format: venv
	$(VENV)/bin/ruff format squeak tests bench twisted
	$(VENV)/bin/ruff check --fix squeak tests bench twisted

bench: venv
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info _trial_temp* twisted/plugins/dropin.cache
