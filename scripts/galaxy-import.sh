#!/usr/bin/env bash
# Runs Galaxy's own import checker (galaxy-importer) on the collection
# tarball, as Galaxy would on upload, offline: the ansible-test step stays off
# (make sanity runs it on its own). Any warning or error it prints fails,
# not only the ones that refuse the import.
#
#   scripts/galaxy-import.sh
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=galaxy-import
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"
# The importer's own ansible-core and ansible-lint, not the controller's.
use_release_tools

work=$(mktemp -d "${TMPDIR:-/tmp}/flaskops-import.XXXXXX")
trap 'rm -rf "$work"' EXIT
cat >"$work/galaxy-importer.cfg" <<'CFG'
[galaxy-importer]
LOG_LEVEL_MAIN = INFO
RUN_ANSIBLE_DOC = True
RUN_ANSIBLE_LINT = True
OFFLINE_ANSIBLE_LINT = True
RUN_ANSIBLE_TEST = False
CHECK_CHANGELOG = True
CFG
export GALAXY_IMPORTER_CONFIG="$work/galaxy-importer.cfg"
ansible-galaxy collection build "$REPO_ROOT" --output-path "$work" >/dev/null
tarball=$(ls "$work"/flaskops-stack-*.tar.gz)
status=0
(cd "$work" && python -m galaxy_importer.main "$tarball") >"$work/import.log" 2>&1 || status=$?
if [ "$status" -ne 0 ] || grep -qE '^(WARNING|ERROR)' "$work/import.log" \
   || ! grep -q 'Importer processing completed successfully' "$work/import.log"; then
  cat "$work/import.log" >&2
  die "galaxy-importer refused $(basename "$tarball") or warned (exit status $status)"
fi
log "galaxy-importer accepts $(basename "$tarball") with no warning"
