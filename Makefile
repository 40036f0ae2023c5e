# flaskops.stack developer entry points. See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV        ?= $(CURDIR)/.venv
CACHE       := $(CURDIR)/.cache
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# The extra CA bundle handed to the hosts (scripts/testbed.sh ca).
export FLASKOPS_EXTRA_CA_FILE = $(shell scripts/testbed.sh ca)
# The Debian release every scenario runs on (FLASKOPS_DISTRO); SCENARIO@SUITE
# in SCENARIOS runs one on another release too.
export FLASKOPS_DISTRO ?= bookworm
# Scenarios `make test` runs, in the order that lets the two slots end
# closest together with the durations of the last runs (the commits that set
# or checked it have them), containers (whose deploys under load are timed) after
# default, beside multinode's tests rather than its cold converge;
# MOLECULE_JOBS of them at a time:
# each on the release above (multinode puts four of its five hosts on the
# other release of SUITES), and the other ansible-core lines (core@VERSIONS,
# scripts/core-matrix.sh, whose controller host runs Debian 13).
# `make molecule SCENARIOS=base` runs one; `make molecule-matrix` runs
# every scenario on every release in SUITES.
SCENARIO_NAMES := multinode default nginx faults postgres base containers
# The ansible-core lines tested besides the controller's own (meta/runtime.yml).
CORE_VERSIONS ?= 2.20 2.21
SCENARIOS   ?= multinode default containers nginx \
               $(if $(strip $(CORE_VERSIONS)),core@$(subst $(space),$(comma),$(strip $(CORE_VERSIONS)))) postgres faults base
export MOLECULE_JOBS ?= 2
SUITES      ?= bookworm trixie
# The release multinode puts lb, app2, db and backup on: the first other one.
export FLASKOPS_SECOND_DISTRO ?= $(firstword $(filter-out $(FLASKOPS_DISTRO),$(SUITES)))
comma := ,
empty :=
space := $(empty) $(empty)

.PHONY: role-docs changelog-lint help venv collection-link engine images up down test lint yamllint ansible-lint \
        sanity sample-app-test wiring-test collection-test galaxy-import ee-context ee-image slot-checks molecule molecule-matrix core-matrix changelog clean bench bench-scale bench-profile test-quick

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

venv: ## create .venv with the pinned controller tooling
	@scripts/venv.sh

collection-link: ## make this checkout resolvable as the flaskops.stack collection
	@mkdir -p $(CACHE)/collections/ansible_collections/flaskops
	@ln -sfn $(CURDIR) $(CACHE)/collections/ansible_collections/flaskops/stack

engine: ## make sure a Docker engine answers (installs/starts one if needed)
	@scripts/testbed.sh engine

images: ## build or reuse the Debian base images of the test bed
	@scripts/testbed.sh image $(SUITES)

up: venv collection-link ## bring the whole stack up on a local container host, print its URL
	@scripts/testbed.sh image $(FLASKOPS_DISTRO) >/dev/null
	@scripts/local-host.sh up

bench: venv collection-link ## provisioning and serving benchmarks on a fresh container host (docs/benchmarks.md)
	@scripts/bench.sh

bench-scale: venv collection-link ## provisioning time over 1, 2, 4 and 8 app hosts, cold and warm (docs/benchmarks.md)
	@scripts/bench.sh bench/scale.py

bench-profile: venv collection-link ## where the app's workers spend row G's requests, on the host make bench left (ROW=B, C or G)
	@scripts/bench.sh bench/app_profile.py $(or $(ROW),G)

down: venv ## remove the local container host
	@scripts/local-host.sh down

# Checks that need no Molecule host (testbed-test runs throwaway containers
# of the test bed's images), each mostly one process: `make test`
# runs them beside the scenarios rather than before all (alone, they would
# leave a core idle): slot-checks in a slot (its ansible-lint and
# ansible-test have timeouts of their own), the wiring tests, the longest,
# beside the slots with an eighth of the CPU share of one process
# (scripts/molecule-all.sh beside@).
SLOT_CHECKS := lint sample-app-test testbed-test galaxy-import ee-context sanity

test: venv collection-link collection-test images ## everything the project checks
	@scripts/molecule-all.sh make@slot-checks beside@wiring-test $(SCENARIOS)
	@echo "make test: all checks passed"

slot-checks: $(SLOT_CHECKS) ## lint, sample apps, test bed, Galaxy import, EE context, sanity: one after another


test-quick: venv collection-link lint sample-app-test images testbed-test wiring-test ## inner loop: lint, the sample app's tests, test bed, wiring, the base scenario
	@scripts/molecule-all.sh base
	@echo "make test-quick: passed"

lint: yamllint ansible-lint changelog-lint role-docs ## yamllint, ansible-lint (production profile), changelog, README tables

yamllint: venv
	yamllint --strict .

ansible-lint: venv collection-link
	ansible-lint --offline --profile production

galaxy-import: ## Galaxy's import checker (galaxy-importer) on the built tarball: no error, no warning
	@scripts/galaxy-import.sh

ee-context: ## ansible-builder create on execution-environment.yml, the build context checked
	@scripts/ee-context.sh

ee-image: venv images ## build the EE (test bed base) and run site.yml from it on a fresh host
	@scripts/ee-image.sh

sanity: venv ## ansible-test sanity from an ansible_collections/flaskops/stack copy
	@scripts/sanity.sh

sample-app-test: venv ## the sample app's pytest suite against a real PostgreSQL
	@scripts/test-sample-app.sh

testbed-test: venv images ## the test bed's own helpers: the module payloads' compile cache on each release's Python, the scenarios' poll
	python -m pytest -q -p no:cacheprovider tests/testbed

wiring-test: venv ## what the real plays pass each role for several inventory layouts (check mode, recorder roles)
	python -m pytest -q -p no:cacheprovider --durations=15 tests/wiring

collection-test: venv ## build the collection tarball, install it into .cache/installed-collections, resolve it
	@FLASKOPS_INSTALLED_COLLECTIONS=$(CACHE)/installed-collections scripts/test-collection.sh

# The `default` scenario runs the playbook from the installed tarball (collection-test).
molecule: venv collection-link collection-test images ## every Molecule scenario in SCENARIOS
	@scripts/molecule-all.sh $(SCENARIOS)

core-matrix: venv images ## sanity under each ansible-core of CORE_VERSIONS; the stack converged, --check'ed, re-run
	@scripts/core-matrix.sh $(CORE_VERSIONS)

molecule-matrix: venv collection-link collection-test images ## every scenario on every Debian release in SUITES
	@scripts/molecule-all.sh $(SCENARIO_NAMES) \
	  $(foreach suite,$(filter-out $(FLASKOPS_DISTRO),$(SUITES)),$(addsuffix @$(suite),$(SCENARIO_NAMES)))

changelog: venv ## release the changelog fragments into CHANGELOG.rst
	antsibull-changelog release

clean: ## remove the venv and caches (base images stay in Docker)
	rm -rf $(VENV) $(CACHE)

role-docs: venv ## check the README's role variable tables against the argument specs
	python3 scripts/role-docs.py --check

changelog-lint: venv ## check the changelog fragments
	antsibull-changelog lint
