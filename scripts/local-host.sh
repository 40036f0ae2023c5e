#!/usr/bin/env bash
# The `make up` / `make down` host: one systemd container from the test bed's
# image of FLASKOPS_DISTRO (default bookworm), ports published on 127.0.0.1,
# provisioned by site.yml.
#
#   scripts/local-host.sh up             create/start the container, run site.yml, print the apps' URLs
#   scripts/local-host.sh down           remove the container
#   scripts/local-host.sh create NAME    a fresh systemd container NAME from the
#                                        same image, no published ports (make bench)
#
# FLASKOPS_HTTP_PORT (default 8080) and FLASKOPS_HTTPS_PORT (default 8443)
# choose the published ports.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=flaskops-local
HTTP_PORT=${FLASKOPS_HTTP_PORT:-8080}
HTTPS_PORT=${FLASKOPS_HTTPS_PORT:-8443}
IMAGE=flaskops/debian:${FLASKOPS_DISTRO:-bookworm}

log() { printf '[local-host] %s\n' "$*" >&2; }

# The flags that let systemd run as PID 1 here (docs/testbed.md).
SYSTEMD_FLAGS=(--cap-add SYS_ADMIN --cap-add NET_ADMIN
  --security-opt seccomp=unconfined --security-opt apparmor=unconfined
  --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw
  --tmpfs /run --tmpfs /run/lock --tmpfs /tmp --stop-signal SIGRTMIN+3)

# Waits until systemd in container $1 has booted.
wait_for_systemd() {
  local state=""
  for _ in $(seq 1 60); do
    state=$(docker exec "$1" systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) return 0 ;; esac
    sleep 1
  done
  log "systemd in $1 did not come up (state: ${state:-none})"
  exit 1
}

# Runs container $1 from the image with systemd as PID 1; further
# arguments go to `docker run` (published ports).
run_container() {
  local name=$1; shift
  log "creating $name from $IMAGE"
  docker run -d --name "$name" --hostname "$name" "${SYSTEMD_FLAGS[@]}" "$@" "$IMAGE" >/dev/null
}

# A fresh container $1 (an old one of that name is removed), no ports published.
create() {
  local name=${1:?usage: $0 create NAME}
  "$REPO_ROOT/scripts/testbed.sh" engine
  docker rm -f "$name" >/dev/null 2>&1 || true
  run_container "$name"
  wait_for_systemd "$name"
}

up() {
  "$REPO_ROOT/scripts/testbed.sh" engine
  if ! docker container inspect "$NAME" >/dev/null 2>&1; then
    run_container "$NAME" -p "127.0.0.1:$HTTP_PORT:80" -p "127.0.0.1:$HTTPS_PORT:443"
  elif [ "$(docker container inspect -f '{{.State.Running}}' "$NAME")" != true ]; then
    docker start "$NAME" >/dev/null
  fi
  wait_for_systemd "$NAME"

  (cd "$REPO_ROOT" && ansible-playbook -i inventories/local playbooks/site.yml)

  # Each app by its name (nginx_server_name: *.localhost is loopback). The
  # certificates are self-signed: -k. The health paths go through nginx,
  # uWSGI and Flask to PostgreSQL.
  local app server health url code urls=()
  while read -r app server health; do
    url="https://$server:$HTTPS_PORT/"
    code=$(curl -ks -o /dev/null -w '%{http_code}' --max-time 10 --resolve "$server:$HTTPS_PORT:127.0.0.1" \
      "${url%/}$health" || true)
    if [ "$code" != 200 ]; then log "app $app: ${url%/}$health answers HTTP ${code:-nothing}"; exit 1; fi
    urls+=("$url")
    log "app $app answers at $url"
  done < <(cd "$REPO_ROOT" && ansible-inventory -i inventories/local --host flaskops-local | python3 -c '
import json, sys
hostvars = json.load(sys.stdin)
for app in hostvars["flaskops_apps"]:
    health = app.get("flask_app_health_path", hostvars.get("flask_app_health_path", "")) or "/"
    print(app["name"], app["nginx_server_name"].split()[0], health)
')
  log "$NAME: self-signed certificates; http://<name>:$HTTP_PORT/ redirects to https"
  printf '%s\n' "${urls[@]}"
}

down() {
  if docker info >/dev/null 2>&1 && docker container inspect "$NAME" >/dev/null 2>&1; then
    docker rm -f "$NAME" >/dev/null
    log "removed $NAME"
  else
    log "$NAME does not exist"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  create) create "${2:-}" ;;
  *) echo "usage: $0 up|down|create NAME" >&2; exit 2 ;;
esac
