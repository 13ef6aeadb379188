# fenrir.fleet -- two commands for a newcomer:
#   make provision   set everything up on this machine and run the main job (3 local nodes)
#   make test        ansible-lint, unit + integration tests, the Molecule scenario, a benchmark smoke run
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV       ?= .venv
PY         := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export ANSIBLE_CONFIG := $(abspath ansible.cfg)
STAMP      := $(VENV)/.installed
# A second controller, ansible-core 2.18 (meta/runtime.yml declares >=2.18,<2.20): the unit tests run there too.
VENV218    ?= .venv-core2.18
STAMP218   := $(VENV218)/.installed
BENCH_NODES ?= 50
BENCH_UPGRADE_BATCH ?= 10

.PHONY: help venv venv-core2.18 docker image host-image provision check decommission status test test-core2.18 unit integration molecule molecule-docker-host docker-host-test fleet-hosts-test bench bench-smoke bench-registry lint sanity changelog doc clean

help:
	@echo "make provision  - set up (venv, Docker engine, node image) and provision the local fleet"
	@echo "make test       - unit + integration tests, Molecule scenario, benchmark smoke run"
	@echo "make check      - dry run of the main job (--check --diff), changes nothing"
	@echo "make status     - registry against Docker, per node"
	@echo "make decommission - remove the local fleet"
	@echo "make bench      - fleet-scale benchmark (BENCH_NODES=$(BENCH_NODES)), the registry's allocation cost, two Docker hosts, a rolling upgrade"
	@echo "make bench-registry - the registry's allocation cost on SQLite and PostgreSQL (a private server it starts)"
	@echo "make lint       - ansible-lint (production profile)"
	@echo "make sanity     - ansible-test sanity on a laid-out copy of the collection"
	@echo "make host-image - build the stand-in Docker host image (debootstrap; once, ~1.5-3 min)"
	@echo "make molecule-docker-host - Molecule scenario docker_host: two stand-in hosts over SSH and mutual TLS"
	@echo "make docker-host-test - pytest tests/integration/test_docker_host.py (two stand-in hosts)"
	@echo "make test-core2.18 - the unit tests under ansible-core 2.18 (a second virtualenv, .venv-core2.18)"
	@echo "make fleet-hosts-test - pytest tests/integration/test_fleet_hosts.py (a fleet over two stand-in hosts)"

$(STAMP): requirements.txt constraints.txt
	@python3 -c 'import ensurepip' 2>/dev/null || { echo "installing python3-venv"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	@scripts/link-collection
	@touch $@

venv: $(STAMP)

$(STAMP218): requirements-core2.18.txt constraints-core2.18.txt
	@test -x $(VENV218)/bin/python || python3 -m venv $(VENV218)
	$(VENV218)/bin/python -m pip install --quiet --upgrade pip
	$(VENV218)/bin/python -m pip install --quiet -r requirements-core2.18.txt -c constraints-core2.18.txt
	@touch $@

venv-core2.18: $(STAMP218)

docker:
	@scripts/ensure-docker

image: docker
	@scripts/ensure-node-image
	@scripts/ensure-tenant-image

# The stand-in Docker hosts' image (systemd + dockerd + sshd), for the docker_host tests only.
host-image: docker
	@scripts/ensure-host-image

provision: venv image
	ansible-playbook playbooks/provision.yml

# A dry run changes nothing on this machine either: no engine is installed, no image built.
check: venv
	ansible-playbook playbooks/provision.yml --check --diff

decommission: venv docker
	ansible-playbook playbooks/decommission.yml

status: venv docker
	ansible-playbook playbooks/status.yml

unit: venv
	$(PY) -m pytest -q tests/unit

integration: venv image
	$(PY) -m pytest -q tests/integration

molecule: venv image
	molecule test

molecule-docker-host: venv host-image
	molecule test -s docker_host

docker-host-test: venv host-image
	FENRIR_DOCKER_HOST_TESTS=1 $(PY) -m pytest -q tests/integration/test_docker_host.py

fleet-hosts-test: venv image host-image
	FENRIR_DOCKER_HOST_TESTS=1 $(PY) -m pytest -q -s tests/integration/test_fleet_hosts.py

bench-smoke: venv image
	$(PY) bench/fleet_bench.py --nodes 3 --skip-baselines --results bench/results/smoke.json

# bench_allocation.py starts the private PostgreSQL cluster of scripts/ensure-postgres itself (FENRIR_BENCH_PG_DSN
# names another server) and prints 8 processes x 50 allocations on SQLite and PostgreSQL side by side.
# bench_upgrade.py: BENCH_NODES nodes to a variant image in batches of BENCH_UPGRADE_BATCH, then back all at once,
# with the fewest nodes answering the signed echo during each.
bench: venv image host-image
	$(PY) bench/fleet_bench.py --nodes $(BENCH_NODES)
	$(PY) bench/bench_allocation.py
	$(PY) bench/bench_hosts.py --nodes $(BENCH_NODES)
	$(PY) bench/bench_upgrade.py --nodes $(BENCH_NODES) --batch $(BENCH_UPGRADE_BATCH)

bench-registry: venv
	$(PY) bench/bench_allocation.py

test: venv venv-core2.18 image host-image
	ansible-lint
	scripts/sanity
	FENRIR_DOCKER_HOST_TESTS=1 $(PY) -m pytest -q tests
	$(MAKE) --no-print-directory test-core2.18
	molecule test
	molecule test -s docker_host
	$(PY) bench/fleet_bench.py --nodes 3 --skip-baselines --results bench/results/smoke.json

# The unit tests under ansible-core 2.18 (the PostgreSQL half of the registry tests is left to the 2.19 run: it
# does not depend on ansible-core). One provision -> re-run -> decommission under 2.18 is part of
# tests/integration/test_package.py, which `make test` runs with the rest.
test-core2.18: venv-core2.18
	FENRIR_SKIP_POSTGRES=1 $(VENV218)/bin/python -m pytest -q -p no:cacheprovider tests/unit

lint: venv
	ansible-lint

sanity: venv
	scripts/sanity

changelog: venv
	antsibull-changelog lint
	antsibull-changelog generate

doc: venv
	@for m in plugins/modules/*.py; do n=$$(basename $$m .py); ansible-doc -t module fenrir.fleet.$$n >/dev/null && echo "ok  $$n"; done

clean:
	rm -rf .pytest_cache bench/results
