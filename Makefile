# Flotilla: `make test` runs every test tier; `make demo` brings up a cloud.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST := $(VENV)/bin/pytest

.PHONY: venv services test test-unit test-functional test-integration test-systemd \
	test-integration-parallel \
	test-containers containers-up containers-down tempest lint genconfig bench demo \
	demo-stop clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e '.[test,bench,lint]'
	touch $@

venv: $(VENV)/.installed

services:
	tools/ensure-services.sh

# Every tier on this machine's services, then the RPC and fault tests against
# RabbitMQ and PostgreSQL in containers.
# The in-process tiers run on two workers (pytest-xdist), and so does the
# integration tier, a module's tests kept together on one worker (each with
# its own rig, clouds, vhosts and databases; the tier mostly waits on
# guests); the systemd tier, one container at a time, runs alone.
test: services venv
	$(PYTEST) -q -p no:cacheprovider -n 2 tests/unit tests/functional
	$(MAKE) --no-print-directory test-integration-parallel
	$(PYTEST) -q -p no:cacheprovider --durations=10 tests/systemd
	$(MAKE) --no-print-directory test-containers
	$(MAKE) --no-print-directory tempest

test-unit: venv
	$(PYTEST) -q tests/unit

test-functional: venv
	$(PYTEST) -q tests/functional

# The integration tier against any broker and database:
#   make test-integration FLOTILLA_TEST_RABBIT=user:pw@host:5672 \
#     FLOTILLA_TEST_RABBITMQCTL="ssh host rabbitmqctl" \
#     FLOTILLA_TEST_POSTGRES=postgresql://postgres@host:5432/postgres
test-integration: services venv
	$(PYTEST) -q tests/integration --ignore=tests/integration/chaos

# The same tier with its modules shared between two workers (a module's tests
# stay together), as `make test` runs it; the guest image is built (or found
# cached) first, once.
test-integration-parallel: services venv
	$(PY) tools/guest-image/build.py >/dev/null
	$(PYTEST) -q -p no:cacheprovider -n 2 --dist loadfile --durations=25 tests/integration \
		--ignore=tests/integration/chaos

# RabbitMQ and PostgreSQL in containers (tools/containers/, built from Debian
# packages on a dockerd of the project's own), the RPC tests and the fault
# tests against them; the containers and the daemon are stopped afterwards.
test-containers: venv
	set -e; trap '$(PY) tools/containers/ctl.py down' EXIT; \
		$(PY) tools/containers/ctl.py up >/dev/null; \
		eval "$$($(PY) tools/containers/ctl.py env)"; \
		$(PYTEST) -q -s -p no:cacheprovider tests/integration/rpc tests/integration/chaos

containers-up: venv
	$(PY) tools/containers/ctl.py up

containers-down: venv
	$(PY) tools/containers/ctl.py down

# The units under a real systemd (PID 1 of a systemd-nspawn container): needs
# root; installs systemd-container and mmdebstrap when missing.
test-systemd: services venv
	$(PYTEST) -q -p no:cacheprovider tests/systemd

# OpenStack's own API tests (Tempest, pinned, in its own venv) against
# flotilla-all; CLOUD=FILE runs them against a running cloud instead (the
# OS_* file `make demo KEEP=1` prints).
TEMPEST_VERSION := 47.0.0
TEMPEST_VENV := .tempest-venv

$(TEMPEST_VENV)/.installed-$(TEMPEST_VERSION):
	rm -rf $(TEMPEST_VENV)
	$(PYTHON) -m venv $(TEMPEST_VENV)
	$(TEMPEST_VENV)/bin/pip install -q --upgrade pip
	$(TEMPEST_VENV)/bin/pip install -q 'tempest==$(TEMPEST_VERSION)'
	touch $@

tempest: venv $(TEMPEST_VENV)/.installed-$(TEMPEST_VERSION)
	$(PY) tools/tempest/run.py --venv $(TEMPEST_VENV) $(if $(CLOUD),--cloud $(CLOUD),)

lint: venv
	$(VENV)/bin/ruff check flotilla api scheduler conductor compute volume tests tools

genconfig: venv
	$(VENV)/bin/oslo-config-generator --config-file etc/flotilla/flotilla-config-generator.conf

bench: services venv
	$(PY) tools/bench/rpc.py
	$(PY) tools/bench/spawn.py
	$(PY) tools/bench/scheduler.py
	$(PY) tools/bench/api.py
	$(PY) tools/bench/e2e_boot.py
	$(PY) tools/bench/snapshot.py
	$(PY) tools/bench/volume.py
	$(PY) tools/bench/migrate.py

# The main job: a real two-host cloud, walked through as a tenant.
# KEEP=1 leaves it running (make demo-stop ends it).
demo: services venv
	$(PY) tools/demo/demo.py $(if $(KEEP),--keep,)

demo-stop: venv
	$(PY) tools/demo/demo.py stop

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
