#!/usr/bin/env bash
# Proves the ansible-core lines meta/runtime.yml admits besides the
# controller's own 2.19 (which every other check runs on Python 3.11): 2.20
# and 2.21 need Python 3.12 or newer, so their controller is a Debian 13
# container (Python 3.13) from the test bed's image, one for all the
# VERSIONs given, FLASKOPS-CORE-<VERSIONS>:
#   - for each VERSION, a venv with that ansible-core and the `ansible`
#     package of its line (requirements/core-VERSION.txt); ansible-test
#     sanity on the collection's files under the last VERSION only (the
#     newest line's rules; `make sanity` runs the controller's 2.19: a
#     sanity run per line would cost make test about a minute each);
#   - the whole stack converged on the container itself (local connection)
#     with flaskops.stack.site from the built tarball under the first
#     VERSION, then run in --check --diff mode under it (no change reported:
#     the converged-host check of the suite), then converged again under
#     each other VERSION with no change, then /health asked through nginx,
#     uWSGI, Flask and PostgreSQL. A fresh converge per line would repeat
#     the same package installs; each line still runs every task of
#     site.yml against a real host.
#
#   scripts/core-matrix.sh [VERSION...]     default: 2.20 2.21 (also "2.20,2.21")
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=core-matrix
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"
VENV=${FLASKOPS_VENV:-$REPO_ROOT/.venv}
[ "$#" -gt 0 ] || set -- 2.20 2.21
# shellcheck disable=SC2046
set -- $(printf '%s\n' "$@" | tr ',' ' ')
logs="$REPO_ROOT/.cache/core-matrix"
mkdir -p "$logs"

# Runs a shell command line inside container $host.
in_host() { docker exec -e PIP_CERT=/etc/ssl/certs/ca-certificates.crt "$host" sh -euc "$1"; }

# Converges the container with site.yml under ansible-core $1 (run $2; more
# arguments go to ansible-playbook); prints the number of changed tasks.
converge() {
  local out=$logs/$host-site-$2.json version=$1
  shift 2
  if ! docker exec -e ANSIBLE_COLLECTIONS_PATH=/root/collections -e ANSIBLE_STDOUT_CALLBACK=ansible.builtin.json \
       -e ANSIBLE_NOCOLOR=1 "$host" "/opt/controller-$version/bin/ansible-playbook" -i /root/hosts.yml flaskops.stack.site "$@" \
       >"$out" 2>&1; then
    grep -E '"msg"' "$out" | tail -n 20 >&2
    return 1
  fi
  python3 - "$out" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
report = json.JSONDecoder().raw_decode(text, text.index("\n{") + 1 if not text.startswith("{") else 0)[0]
print(sum(s.get("changed", 0) for s in report["stats"].values()))
PY
}

work=$(mktemp -d "${TMPDIR:-/tmp}/flaskops-core.XXXXXX")
host=""
cleanup() { [ -z "$host" ] || docker rm -f "$host" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

# The collection as a tarball, and its files as ansible-test sees them
# (what git would ship: tracked and new, non-ignored files).
"$VENV/bin/ansible-galaxy" collection build "$REPO_ROOT" --output-path "$work" >/dev/null
tarball=$(ls "$work"/flaskops-stack-*.tar.gz)
# shellcheck disable=SC2016
(cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard \
  | xargs -0 -n 1 sh -c 'if [ -e "$1" ]; then printf "%s\0" "$1"; fi' _ \
  | tar --null -T - -cf "$work/tree.tar")
ca=$("$REPO_ROOT/scripts/testbed.sh" ca)

host="flaskops-core-$(IFS=-; echo "${*//./-}")"
FLASKOPS_DISTRO=trixie "$REPO_ROOT/scripts/local-host.sh" create "$host"
if [ -n "$ca" ]; then
  docker cp "$ca" "$host:/usr/local/share/ca-certificates/flaskops-extra.crt"
  in_host 'update-ca-certificates >/dev/null 2>&1' || die "update-ca-certificates failed in $host"
fi
docker cp "$REPO_ROOT/scripts/ansible-test-pip-bootstrap.py" "$host:/root/pip-bootstrap.py"
retry 3 in_host 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv git shellcheck >/dev/null' \
  || die "apt-get install failed in $host"
# ansible-test runs programs from /tmp, a noexec tmpfs in the test bed's containers.
in_host 'mount -o remount,exec /tmp' || die "cannot remount /tmp exec in $host"
docker cp "$work/tree.tar" "$host:/root/tree.tar"

for version in "$@"; do
  requirements="$REPO_ROOT/requirements/core-$version.txt"
  [ -f "$requirements" ] || die "no $requirements: ansible-core $version is not pinned"
  log "ansible-core $version: controller venv in $host"
  docker cp "$requirements" "$host:/root/requirements-$version.txt"
  retry 3 in_host "rm -rf /opt/controller-$version && python3 -m venv /opt/controller-$version \
    && /opt/controller-$version/bin/pip install -q --disable-pip-version-check -r /root/requirements-$version.txt" \
    || die "pip install of ansible-core $version failed in $host"
  got=$(in_host "/opt/controller-$version/bin/ansible --version" | sed -n '1s/.*core \([0-9]*\.[0-9]*\).*/\1/p')
  [ "$got" = "$version" ] || die "$host runs ansible-core $got, not $version"

  [ "$version" = "${!#}" ] || continue
  log "ansible-core $version: sanity"
  # shellcheck disable=SC2016
  if ! in_host 'c=/root/ansible_collections/flaskops/stack
       rm -rf $c
       mkdir -p $c
       tar -C $c -xf /root/tree.tar
       cd $c
       git init -q
       git add -A
       /opt/controller-'"$version"'/bin/python /root/pip-bootstrap.py >/dev/null
       PATH=/opt/controller-'"$version"'/bin:$PATH ansible-test sanity --venv --python 3.13 --color no' \
       >"$logs/$host-sanity-$version.log" 2>&1; then
    grep -E '^ERROR|^FATAL' "$logs/$host-sanity-$version.log" | head -n 40 >&2
    die "ansible-core $version: sanity failed ($logs/$host-sanity-$version.log)"
  fi
  log "ansible-core $version: sanity clean"
done

log "ansible-core $1: flaskops.stack.site on $host itself"
docker cp "$tarball" "$host:/root/collection.tar.gz"
in_host "/opt/controller-$1/bin/ansible-galaxy collection install /root/collection.tar.gz -p /root/collections --no-deps" \
  >"$logs/$host-install.log" 2>&1 || die "installing the tarball failed in $host ($logs/$host-install.log)"
password=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
extra_ca=""
[ -z "$ca" ] || extra_ca=/usr/local/share/ca-certificates/flaskops-extra.crt
cat >"$work/hosts.yml" <<YAML
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: /usr/bin/python3
    base_ca_certificates_files: [$extra_ca]
    postgres_app_password: $password
    flask_app_health_path: /health
  children:
    webservers: {hosts: {localhost: null}}
    appservers: {hosts: {localhost: null}}
    dbservers: {hosts: {localhost: null}}
YAML
docker cp "$work/hosts.yml" "$host:/root/hosts.yml"
start=$(date +%s)
first=$(converge "$1" "$1-fresh") || die "ansible-core $1: site.yml failed ($logs/$host-site-$1-fresh.json)"
log "ansible-core $1: site.yml changed $first tasks in $(( $(date +%s) - start ))s"
# Check mode on the converged host must report no change (the roles'
# check-mode branches; the default scenario runs --check on a fresh host).
checked=$(converge "$1" "$1-check" --check --diff) \
  || die "ansible-core $1: --check on the converged host failed ($logs/$host-site-$1-check.json)"
[ "$checked" -eq 0 ] || die "ansible-core $1: --check on the converged host reported $checked changes"
log "ansible-core $1: site.yml --check --diff on the converged host reported 0 changes"
# A second real run under each other line (under the one line if only one)
# must change nothing.
for version in "$@"; do
  [ "$version" != "$1" ] || [ "$#" -eq 1 ] || continue
  again=$(converge "$version" "$version-again") \
    || die "ansible-core $version: the run on the converged host failed ($logs/$host-site-$version-again.json)"
  [ "$again" -eq 0 ] || die "ansible-core $version: the run on the converged host changed $again tasks (idempotence)"
  log "ansible-core $version: site.yml on the converged host changed 0 tasks"
done
status=$(in_host 'python3 -c "
import ssl, urllib.request
print(urllib.request.urlopen(\"https://127.0.0.1/health\", context=ssl._create_unverified_context(), timeout=10).status)"' 2>&1 || true)
[ "$status" = 200 ] || die "/health through nginx answered: $status"
docker rm -f "$host" >/dev/null
host=""
log "ansible-core $*: sanity clean under ${!#}; site.yml converged, --check and a re-run with 0 changes; /health 200"
