#!/usr/bin/env bash
# Proves each ansible-core line that meta/runtime.yml admits besides the
# controller's own (2.19, which every other check runs): for each VERSION,
# a venv with that ansible-core and the `ansible` package of its line
# (requirements/core-VERSION.txt), ansible-test sanity under it, and the
# whole stack converged with playbooks/site.yml on a fresh systemd container,
# then converged again with no change, then asked for /health through nginx,
# uWSGI, Flask and PostgreSQL.
#
#   scripts/core-matrix.sh [VERSION...]     default: 2.17 2.18
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=core-matrix
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"
[ "$#" -gt 0 ] || set -- 2.17 2.18

# Runs site.yml from venv $1 on container $2 with inventory $3; prints the
# number of changed tasks from the JSON report.
converge() {
  local venv=$1 inventory=$3 out
  out=$(cd "$REPO_ROOT" && ANSIBLE_STDOUT_CALLBACK=ansible.builtin.json ANSIBLE_CALLBACKS_ENABLED='' \
        "$venv/bin/ansible-playbook" -i "$inventory" playbooks/site.yml) \
    || { printf '%s\n' "$out" | grep -E '"msg"' | tail -n 20 >&2; return 1; }
  # Other callbacks may print around the JSON document.
  printf '%s\n' "$out" | sed -n '/^{/,$p' | "$venv/bin/python" -c '
import json, sys
report = json.JSONDecoder().raw_decode(sys.stdin.read())[0]
print(sum(s.get("changed", 0) for s in report["stats"].values()))'
}

for version in "$@"; do
  requirements="$REPO_ROOT/requirements/core-$version.txt"
  [ -f "$requirements" ] || die "no $requirements: ansible-core $version is not pinned"
  venv="$REPO_ROOT/.cache/core-$version"
  FLASKOPS_VENV="$venv" "$REPO_ROOT/scripts/venv.sh" "$requirements"
  got=$("$venv/bin/ansible" --version | sed -n '1s/.*core \([0-9]*\.[0-9]*\).*/\1/p')
  [ "$got" = "$version" ] || die "$venv runs ansible-core $got, not $version"

  log "ansible-core $version: sanity"
  FLASKOPS_VENV="$venv" "$REPO_ROOT/scripts/sanity.sh" >"$REPO_ROOT/.cache/core-$version-sanity.log" 2>&1 \
    || { tail -n 60 "$REPO_ROOT/.cache/core-$version-sanity.log" >&2; die "ansible-core $version: sanity failed"; }

  host="flaskops-core-${version//./-}"
  work=$(mktemp -d "${TMPDIR:-/tmp}/flaskops-core.XXXXXX")
  "$REPO_ROOT/scripts/local-host.sh" create "$host"
  cat >"$work/hosts.yml" <<YAML
all:
  vars:
    ansible_connection: community.docker.docker
    ansible_python_interpreter: /usr/bin/python3
    base_ca_certificates_files: "{{ [lookup('ansible.builtin.env', 'FLASKOPS_EXTRA_CA_FILE')] | select | list }}"
    postgres_app_password: "$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
    flask_app_health_path: /health
  children:
    webservers: {hosts: {$host: null}}
    appservers: {hosts: {$host: null}}
    dbservers: {hosts: {$host: null}}
YAML
  log "ansible-core $version: site.yml on a fresh $host"
  start=$(date +%s)
  first=$(converge "$venv" "$host" "$work/hosts.yml") || die "ansible-core $version: site.yml failed on $host"
  took=$(( $(date +%s) - start ))
  second=$(converge "$venv" "$host" "$work/hosts.yml") || die "ansible-core $version: the second run failed"
  [ "$second" -eq 0 ] || die "ansible-core $version: the second run changed $second tasks (idempotence)"
  # Through nginx (HTTPS, self-signed), uWSGI and Flask to PostgreSQL.
  status=$(docker exec "$host" python3 -c '
import ssl, urllib.request
ctx = ssl._create_unverified_context()
print(urllib.request.urlopen("https://127.0.0.1/health", context=ctx, timeout=10).status)' 2>&1 || true)
  [ "$status" = 200 ] || die "ansible-core $version: /health through nginx answered: $status"
  docker rm -f "$host" >/dev/null
  rm -rf "$work"
  log "ansible-core $version: sanity clean; site.yml changed $first tasks in ${took}s, then 0; /health 200"
done
