# redis-ha-kit — every entry point a person or CI uses.
#   make deploy [ENV=staging] [FULL=1]  deploy the kit (no ENV: the local lab); FULL=1 skips nothing
#   make upgrade [ENV=staging]  rolling upgrade/restart, a writable master throughout
#   make status [ENV=staging]   the service as the app sees it, and when Sentinel may fail over next
#   make test                   lint, unit + loopback-cluster + Ansible tests, Molecule on nspawn hosts
#   make test-matrix            Molecule `default` again on Debian 13 (Redis 8, Valkey 8), then `tls`
#   make test-ops               Molecule day-2 scenarios: upgrade to least privilege, password rotation
#   make test-compat            client + RQ tests against the oldest and the newest redis-py/RQ allowed
#   make dist                   the client's sdist and wheel in dist/, checked with twine
#   make collection             the Ansible collection redis_ha_kit.redis_ha in dist/collection/
#   make bench                  client and RQ benchmarks on a loopback cluster (prints figures)
#   make drill [ENV=..] KIND=.. break the cluster on purpose while jobs flow; report
#   make retire [ENV=..] HOST=.. take a Redis/Sentinel host out of a running cluster, safely
#   make reseed [ENV=..] HOST=.. give a node's untrusted data up and copy the master's (never promoted meanwhile)
#   make backup [ENV=..]        take an RDB backup now, from an in-sync replica
#   make restore [ENV=..] FROM= build the cluster from a backup (FROM=latest or a file; CONFIRM=yes over data)
#   make lab-up / lab-down      local systemd-nspawn test hosts
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
ENV ?=
# Debian packages the kit's own tooling needs on the machine running make.
APT_PACKAGES := python3-venv redis-server redis-sentinel redis-tools \
	systemd-container debootstrap dpkg-dev iproute2 iptables openssh-client openssl \
	prometheus prometheus-redis-exporter prometheus-alertmanager
PYTEST_ARGS ?=

.PHONY: help system-deps venv lint test unit integration ansible-checks bench \
	deploy upgrade tls-switch status retire reseed backup restore drill test-drills molecule test-matrix test-ops test-compat \
	dist collection lab-up lab-down clean

# The comment block at the top of this file, up to its first line that is not a comment.
help:
	@awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' Makefile

# Installs only what is missing, so repeated runs cost one dpkg query.
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt client/pyproject.toml | system-deps
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e client
	@touch $@

lint: venv
	$(BIN)/ruff check client tests collection
	$(BIN)/ruff format --check client tests collection
	$(BIN)/mypy
	$(BIN)/yamllint --strict .
	@if [ -d roles ] && ls roles/*/tasks/main.yml >/dev/null 2>&1; then \
		$(BIN)/ansible-lint --profile production; fi

# pytest exits 5 when a marker selects nothing; that is not a failure here.
define run_pytest
	$(BIN)/pytest $(1) $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc
endef

unit: venv
	@$(call run_pytest,-m "not integration and not lab")

integration: venv system-deps
	@$(call run_pytest,-m integration)

# partition also runs scenario default's checks, on its lab after the partitions: one lab fewer.
MOLECULE_SCENARIOS := failover partition

# Loopback tests mostly wait on real failovers: PYTEST_WORKERS processes run them side by side,
# and lint beside them (its output is shown after theirs); then the Molecule scenarios.
PYTEST_WORKERS ?= 3
test: venv system-deps
	@lint_log=$$(mktemp); \
	( $(MAKE) --no-print-directory lint > "$$lint_log" 2>&1 ) & lint_pid=$$!; \
	$(BIN)/pytest -m "not lab" -n $(PYTEST_WORKERS) $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; \
	wait $$lint_pid; lint_rc=$$?; cat "$$lint_log"; rm -f "$$lint_log"; \
	if [ $$lint_rc -ne 0 ]; then echo "make test: lint failed (above)"; exit $$lint_rc; fi; exit $$rc
	@for scenario in $(MOLECULE_SCENARIOS); do \
		$(MAKE) --no-print-directory molecule SCENARIO=$$scenario || exit $$?; done

# Molecule on real test hosts: each scenario boots its own systemd-nspawn lab (never the
# `make lab-up` one), converges ansible/site.yml, checks idempotence, verifies with testinfra,
# and always destroys its lab. Scenarios: default (a fresh cluster's checks), failover (kill -9
# and SENTINEL FAILOVER while jobs flow), partition (the master cut off the network, then
# default's checks on the same lab), tls (everything over TLS only) and the Debian 13 ones of
# test-matrix.
SCENARIO ?= default
molecule: venv system-deps
	cd tests && PATH=$(CURDIR)/$(VENV)/bin:$$PATH molecule -c molecule/config.yml test -s $(SCENARIO)

# The `default` scenario's sequence and checks on Debian 13 hosts, once per package the kit
# deploys there (trixie-redis: redis-server 8, trixie-valkey: redis_ha_flavor valkey). Not part
# of `make test`, which stays on Debian 12.
MATRIX_SCENARIOS := trixie-redis trixie-valkey
# tls: the full deploy with redis_ha_tls (throwaway CA, client certificates) on Debian 12.
MATRIX_SCENARIOS += tls
test-matrix:
	@for scenario in $(MATRIX_SCENARIOS); do \
		$(MAKE) --no-print-directory molecule SCENARIO=$$scenario || exit $$?; done

# Day-2 operations while jobs flow, each on its own lab; not part of `make test`. credentials: a
# cluster of the previous release upgraded to the Sentinel users and least-privileged apps, then
# six passwords rotated in two deploys, a producer and the worker running throughout. members: a
# fourth node grows the cluster, the master is retired (make retire), a replica that died for good
# is replaced under its name, each change a deploy or make retire while jobs flow.
OPS_SCENARIOS := credentials members
# backup: scheduled backups from a replica shipped to a backup host, a restore refused without
# CONFIRM, and the total-loss drill (every node wiped, the latest backup restored), jobs flowing.
OPS_SCENARIOS += backup
# move: three Debian 12 / Redis 7.0 hosts replaced by three Debian 13 / Valkey 8 hosts (they join,
# the old replicas are retired, then the old master, failed over to the new side), jobs flowing.
OPS_SCENARIOS += move
# tlsswitch: make tls-switch turns TLS on for the running plain-text cluster (new ports), runs again
# (nothing left), and turns it off again, each followed by a deploy that changes nothing, jobs flowing.
OPS_SCENARIOS += tlsswitch
test-ops:
	@for scenario in $(OPS_SCENARIOS); do \
		$(MAKE) --no-print-directory molecule SCENARIO=$$scenario || exit $$?; done

# A scratch copy of the client to build from, so the repository gets no build/ (whose stale
# files would end up in later wheels) or egg-info; removed when the recipe's shell exits.
define client_copy
scratch=$$(mktemp -d) && trap 'rm -rf "$$scratch"' EXIT && \
	cp -RL client/pyproject.toml client/LICENSE client/redis_ha "$$scratch/"
endef

# The client's dependency ranges (client/pyproject.toml), tested at both ends: one virtualenv per
# tests/compat/<end>.txt with the client installed as users install it (not editable), then the
# client and RQ tests in each. One summary line per end; fails if either end fails. Then
# tests/compat/upstream.py, when present. Not part of `make test`, which stays on requirements.txt.
COMPAT_ENDS := oldest newest
COMPAT_TESTS := tests/client tests/rq -m "not lab" -q -p no:cacheprovider
.venv-compat-%/.installed: tests/compat/%.txt client/pyproject.toml requirements.txt
	rm -rf .venv-compat-$*
	$(PYTHON) -m venv .venv-compat-$*
	$(client_copy) && .venv-compat-$*/bin/pip install -q --disable-pip-version-check \
		-c tests/compat/$*.txt "$$scratch" $$(grep -E '^(pytest|pytest-timeout|PyYAML)==' requirements.txt)
	@touch $@

test-compat: venv system-deps $(COMPAT_ENDS:%=.venv-compat-%/.installed)
	@rc=0; $(client_copy) || exit $$?; for end in $(COMPAT_ENDS); do \
		venv=.venv-compat-$$end; \
		$$venv/bin/pip install -q --disable-pip-version-check --no-deps --force-reinstall "$$scratch" || exit $$?; \
		$$venv/bin/python -m pytest $(COMPAT_TESTS) $(PYTEST_ARGS) > $$venv/pytest.log 2>&1 || rc=1; \
		versions=$$($$venv/bin/python -c 'import importlib.metadata as m; print(", ".join(f"{d} {m.version(d)}" for d in ("redis", "rq", "prometheus-client")))'); \
		echo "test-compat $$end ($$versions): $$(tail -n 1 $$venv/pytest.log)  [log: $$venv/pytest.log]"; \
	done; \
	if [ -f tests/compat/upstream.py ]; then $(PY) -m tests.compat.upstream || rc=1; fi; \
	exit $$rc

# The client as PyPI would get it: sdist and wheel in dist/ (version from client/pyproject.toml),
# then `twine check --strict`.
# Leaves dist/collection/ (make collection) alone.
dist: venv
	rm -f dist/redis_ha-*.whl dist/redis_ha-*.tar.gz && $(client_copy) && \
	$(PY) -m build --outdir "$(CURDIR)/dist" "$$scratch" && \
	$(BIN)/twine check --strict dist/redis_ha-*

# The roles, playbooks and filters as the Ansible collection redis_ha_kit.redis_ha (tarball in
# dist/collection/, version from client/pyproject.toml): collection/build.py assembles it from the
# repository's layout in a scratch directory, then runs `ansible-galaxy collection build`.
collection: venv
	$(PY) collection/build.py --output-path dist/collection

bench: venv system-deps
	$(PY) tests/bench/bench_client.py
	$(PY) tests/bench/bench_rq.py
	$(PY) tests/bench/bench_idle_worker.py

lab-up: venv system-deps
	$(PY) tests/lab/lab.py up

lab-down: venv
	$(PY) tests/lab/lab.py down

# Staging/production secrets live in ansible-vault: VAULT_PASSWORD_FILE=path or ASK_VAULT=1.
ANSIBLE_PLAYBOOK := ANSIBLE_CONFIG=$(CURDIR)/ansible/ansible.cfg $(BIN)/ansible-playbook \
	$(if $(VAULT_PASSWORD_FILE),--vault-password-file $(VAULT_PASSWORD_FILE)) $(if $(ASK_VAULT),--ask-vault-pass)

# Runs a playbook against ENV's inventory; no ENV means the local lab, brought up first.
define run_playbook
	@if [ -z "$(ENV)" ]; then \
		$(MAKE) --no-print-directory lab-up && \
		$(ANSIBLE_PLAYBOOK) -i ansible/inventories/lab $(1); \
	elif [ ! -d "ansible/inventories/$(ENV)" ]; then \
		echo "No inventory for ENV=$(ENV): create ansible/inventories/$(ENV)/ (see inventory.example)."; \
		echo "Known environments: $$(ls ansible/inventories | grep -v README | tr '\n' ' ')"; exit 2; \
	else \
		$(ANSIBLE_PLAYBOOK) -i "ansible/inventories/$(ENV)" $(1); \
	fi
endef

# A part of a host the last deploy left as this one would is skipped; FULL=1 runs every part in full.
deploy: venv system-deps
	$(call run_playbook,ansible/site.yml $(if $(FULL),-e redis_ha_full_deploy=true))

# Rolling upgrade/restart that keeps a writable master throughout.
upgrade: venv system-deps
	$(call run_playbook,ansible/upgrade.yml)

# Read-only: `redis-ha status` on an app host, and each Sentinel's failover gate from its journal.
status: venv system-deps
	$(call run_playbook,ansible/status.yml)

# Switch TLS on or off for a running cluster while jobs flow: set redis_ha_tls and new ports
# (redis_ha_redis_port, redis_ha_sentinel_port) in the inventory first (README, "Turning TLS on or
# off"). PAUSE=apps stops once the apps can move, for clients the kit does not run; run it again after.
PAUSE ?=
comma := ,
tls-switch: venv system-deps
	@if [ -n "$(PAUSE)" ] && [ "$(PAUSE)" != apps ]; then \
		echo "PAUSE is '$(PAUSE)': the switch can stop only after the apps moved (PAUSE=apps), or not at all."; exit 2; fi
	$(call run_playbook,ansible/tls_switch.yml $(if $(PAUSE),--tags always$(comma)$(PAUSE)))

# Take one Redis and/or Sentinel host out of a running cluster: refused before any change if too
# few replicas or Sentinels would be left; the master is failed over first; every Sentinel forgets
# the host, one at a time. Then remove HOST from the inventory and run make deploy.
retire: venv system-deps
	@if [ -z "$(HOST)" ]; then echo "Set HOST to the inventory name of the host to retire: make retire ENV=... HOST=redis3"; exit 2; fi
	$(call run_playbook,ansible/retire.yml -e retire_host=$(HOST))

# Give one Redis node's untrusted data up and copy the master's (failed over first if master; never
# promoted meanwhile; old files moved aside, kept).
reseed: venv system-deps
	@if [ -z "$(HOST)" ]; then echo "Set HOST to the inventory name of the node to re-seed: make reseed ENV=... HOST=redis2"; exit 2; fi
	$(call run_playbook,ansible/reseed.yml -e reseed_host=$(HOST))

# Backups (roles/backup): one now, from an in-sync replica; and a cluster rebuilt from one.
backup: venv system-deps
	$(call run_playbook,ansible/backup.yml)

FROM ?=
restore: venv system-deps
	@if [ -z "$(FROM)" ]; then echo "Name the backup: make restore ENV=... FROM=latest (or FROM=path/to/NAME.rdb)"; exit 2; fi
	$(call run_playbook,ansible/restore.yml -e restore_from=$(FROM) -e restore_confirm=$(CONFIRM))

# Failover drills: make drill [ENV=staging] KIND=kill-master [CONFIRM=yes] [DRILL_ARGS="--rate 50 --hold 10"]
# Kinds: kill-master stop-master freeze-master partition-master sentinel-failover kill-sentinel
# restart-replica rolling-restart total-loss (CONFIRM=yes outside the lab: it wipes every node and
# restores the backup it took first; needs backup_enabled). No ENV: the local lab (deployed with `make deploy` first).
KIND ?= kill-master
DRILL_ARGS ?=
drill: venv system-deps
	@if [ -z "$(ENV)" ]; then $(MAKE) --no-print-directory lab-up || exit $$?; fi; \
	CONFIRM="$(CONFIRM)" VAULT_PASSWORD_FILE="$(VAULT_PASSWORD_FILE)" ASK_VAULT="$(ASK_VAULT)" \
	$(BIN)/redis-ha drill run --kind "$(KIND)" --env "$(or $(ENV),lab)" $(DRILL_ARGS)

# The lab's two network-facing drills; each exits non-zero when its SLO is missed.
test-drills: venv system-deps
	$(MAKE) --no-print-directory drill KIND=kill-master
	$(MAKE) --no-print-directory drill KIND=partition-master

clean:
	rm -rf $(VENV) .venv-compat-* dist .pytest_cache .mypy_cache .ruff_cache
