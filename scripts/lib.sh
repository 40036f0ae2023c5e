# Shell helpers shared by the scripts in this folder: source it, after
# setting LOG_TAG to the script's name for the log prefix.
# shellcheck shell=bash

log() { printf '[%s] %s\n' "${LOG_TAG:-flaskops}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Run a command until it succeeds, at most $1 times, sleeping between tries:
# a flaky mirror must not fail a run.
retry() {
  local tries=$1 n=1; shift
  until "$@"; do
    [ "$n" -ge "$tries" ] && return 1
    log "attempt $n of $tries failed: $*; retrying in $((n * 5))s"
    sleep $((n * 5)); n=$((n + 1))
  done
}

# Install Debian packages, retrying transient mirror errors.
apt_install() {
  retry 3 as_root apt-get update -qq
  retry 3 as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Makes the release checks' venv (galaxy-importer, ansible-builder, their own
# ansible-core; requirements/release-tools.txt) and puts it first on PATH.
# Needs REPO_ROOT.
use_release_tools() {
  local venv=${FLASKOPS_RELEASE_VENV:-$REPO_ROOT/.cache/release-venv}
  FLASKOPS_VENV="$venv" "$REPO_ROOT/scripts/venv.sh" "$REPO_ROOT/requirements/release-tools.txt"
  export PATH="$venv/bin:$PATH"
}
