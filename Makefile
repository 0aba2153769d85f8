# pacemaker-cloud — set-up, tests and demo.
#
#   make demo   install what is needed, start cped under ./demo-home and show
#               a deployable recovering from failures
#   make test   install what is needed, then ruff, mypy and the whole test suite
#   make lock   refresh the locks (requirements*.txt) from setup.cfg's ranges (see README)
#   make soak   the fault tests' long forms (about 30 minutes, root); report in
#               soak/results/soak.json and soak.md
#
# Both are idempotent: re-running does nothing that is already done.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
PYTEST_ARGS ?=
# The venv is built from this lock, hash-checked (tools/lock writes it).
LOCK := requirements-dev.txt

# Debian packages the project runs on (see README: dependencies).
DEB_PACKAGES := openssh-server openssh-client resource-agents gcc python3-dev swig libssl-dev \
	pacemaker-cli-utils iproute2 procps util-linux python3-venv \
	debootstrap qemu-utils qemu-system-x86 libguestfs-tools python3-guestfs kmod e2fsprogs \
	libvirt-daemon-system libvirt-clients libvirt-dev pkg-config \
	chromium chromium-driver postgresql
# postgresql: the server the tests start (initdb, pg_ctl-free) for the shared store of
# several cped members; cped itself needs only the psycopg client (the postgresql extra).
# gcc, python3-dev, swig, libssl-dev, libvirt-dev, pkg-config: M2Crypto and libvirt-python build from source.
# libguestfs' Python binding is not on PyPI: Debian's python3-guestfs is linked into the venv.
GUESTFS_DIST := /usr/lib/python3/dist-packages

.PHONY: FORCE all deps lock install install-program install-data test test-openstack lint typecheck pytest demo clean \
	libvirt-up bench bench-quick soak soak-cluster bench-cluster

all: test

FORCE:

# Every use of the venv first checks that it holds exactly what its lock says.
deps: $(STAMPS)/venv $(STAMPS)/project $(STAMPS)/guestfs
	@$(BIN)/python tools/venv-check

$(STAMPS)/deb: Makefile
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "missing Debian packages (install them as root): $$missing" >&2; exit 1; \
		fi; \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@tools/account-files-readable
	@touch $@

# A changed lock rebuilds the venv from scratch: nothing of the old one lingers; so
# does a venv removed by hand (its stamp alone would say it is there).
$(STAMPS)/venv: $(LOCK) requirements-build.txt $(if $(wildcard $(BIN)/python),,FORCE) | $(STAMPS)/deb
	@echo "building $(VENV) from $(LOCK)"
	@tools/venv-build $(PYTHON) $(LOCK)
	@touch $@

# The project in editable mode, again whenever its packages or entry points change.
$(STAMPS)/project: setup.cfg pyproject.toml $(STAMPS)/venv
	@$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

lock: $(STAMPS)/venv
	@tools/lock

$(STAMPS)/guestfs: $(STAMPS)/venv
	@tools/link-guestfs $(BIN)/python $(GUESTFS_DIST)
	@touch $@

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: deps
	$(BIN)/mypy

# libvirtd and virtlogd without systemd (root only; the libvirt e2e tests need them).
libvirt-up: deps
	@if [ "$$(id -u)" = 0 ]; then .ci/libvirt-up; else echo "not root: libvirt e2e tests will skip"; fi

pytest: deps libvirt-up
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The OpenStack tier: the all-in-one cloud (tools/openstack-aio, root) and nova
# servers under TCG; 20-40 minutes on 2 cores, so not part of `make test`.
test-openstack: deps libvirt-up
	PCLOUD_E2E_OPENSTACK=1 $(BIN)/pytest tests/e2e/test_openstack_deployable.py $(PYTEST_ARGS)

# The fault tests' long forms (PCLOUD_SOAK=1): 50+ kills each of dped and cped,
# 10 minutes of failing monitors; they assert their invariants and write a report.
soak: deps
	$(BIN)/python -m soak.run

# Three cped members on PostgreSQL in network namespaces: 50 member kills and 10
# partitions, with a sampler of acting DPEs and instances (about 20 minutes, root);
# report in soak/results/cluster/.
soak-cluster: deps
	$(BIN)/python -m soak.run --cluster --only "random or partitioned" --out soak/results/cluster

demo: deps
	@bash examples/demo.sh

$(STAMPS)/bench: requirements-bench.txt $(STAMPS)/venv
	$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
		--no-build-isolation -r requirements-bench.txt
	@echo requirements-bench.txt >$(VENV)/pcloud-lock
	@touch $@

# Benchmarks are never part of `make test`: they measure, they do not assert.
bench: deps $(STAMPS)/bench
	$(BIN)/python -m bench.run

bench-quick: deps $(STAMPS)/bench
	$(BIN)/python -m bench.run --quick

# Several members on PostgreSQL: adoption after a member kill, the API on PostgreSQL
# and on SQLite (root; bench/results/cluster.json and cluster.md).
bench-cluster: deps
	$(BIN)/python -m bench.cluster

# Installation (as root): the programs in a venv of their own under
# $(PREFIX)/lib/pacemaker-cloud, made from the runtime lock, with pcloudsh, cped
# and dped linked into $(PREFIX)/bin; man pages, bash completion, the systemd
# unit and the sample configuration. DESTDIR stages the data files (the venv
# holds absolute paths: install the programs in place).
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
DATADIR := $(DESTDIR)$(PREFIX)/share
APP := $(PREFIX)/lib/pacemaker-cloud

install: install-program install-data

install-program: $(STAMPS)/deb
	@test -z "$(DESTDIR)" || { echo "install-program installs in place: unset DESTDIR" >&2; exit 2; }
	$(PYTHON) -m venv $(APP)
	$(APP)/bin/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
		-r requirements-build.txt
	$(APP)/bin/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
		--no-build-isolation -r requirements.txt
	$(APP)/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation .
	@tools/link-guestfs $(APP)/bin/python $(GUESTFS_DIST)
	install -d $(PREFIX)/bin
	for program in pcloudsh cped dped; do ln -sf $(APP)/bin/$$program $(PREFIX)/bin/$$program; done

install-data:
	install -D -m 0644 man/pcloudsh.1 $(DATADIR)/man/man1/pcloudsh.1
	install -D -m 0644 man/cped.8 $(DATADIR)/man/man8/cped.8
	install -D -m 0644 man/dped.8 $(DATADIR)/man/man8/dped.8
	install -D -m 0644 contrib/bash-completion/pcloudsh $(DATADIR)/bash-completion/completions/pcloudsh
	install -D -m 0644 contrib/pacemaker-cloud.conf $(DATADIR)/doc/pacemaker-cloud/pacemaker-cloud.conf
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|/usr/local/bin/|$(PREFIX)/bin/|' contrib/systemd/pacemaker-cloud.service \
		>$(DESTDIR)$(PREFIX)/lib/systemd/system/pacemaker-cloud.service
	@conf=$(DESTDIR)$(SYSCONFDIR)/pacemaker-cloud/pacemaker-cloud.conf; \
	if [ -e $$conf ]; then echo "kept $$conf"; \
	else install -D -m 0644 contrib/pacemaker-cloud.conf $$conf; fi

clean:
	rm -rf $(VENV) $(STAMPS) demo-home *.egg-info
