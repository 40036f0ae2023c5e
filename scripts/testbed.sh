#!/usr/bin/env bash
# flaskops.stack local test bed.
#
# Makes sure a Docker engine answers, builds the Debian base images the
# Molecule scenarios and `make up` boot (systemd as PID 1), and collects the
# extra CA certificates the container hosts must trust.
#
#   scripts/testbed.sh engine            make sure `docker info` answers
#   scripts/testbed.sh image [SUITE...]  build (or reuse) base images; default: bookworm trixie
#   scripts/testbed.sh image-name SUITE  print the content-tagged image name of SUITE
#   scripts/testbed.sh ca                write the extra CA bundle, print its path ("" if none)
#   scripts/testbed.sh ssh-key           make (or keep) the key the controller logs in to hosts with
#
# Environment (all optional):
#   FLASKOPS_EXTRA_CA_CERTS  PEM file (one or more certificates) the hosts must trust,
#                            e.g. a corporate TLS-inspecting proxy's CA. Default: every
#                            *.crt in /usr/local/share/ca-certificates of this machine,
#                            which is where Debian keeps locally added CAs. Set it to
#                            "none" to hand no extra CA to the hosts.
#   FLASKOPS_DEBIAN_MIRROR   Debian mirror for debootstrap and the images' apt sources
#                            (default http://deb.debian.org/debian).
#   FLASKOPS_CACHE_DIR       where build artefacts go (default: <repo>/.cache).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${FLASKOPS_CACHE_DIR:-$REPO_ROOT/.cache}
MIRROR=${FLASKOPS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${FLASKOPS_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
IMAGE_REPO=flaskops/debian
# What a fresh Debian cloud VM has; nothing of the stack (no nginx, no
# python3-venv, no compiler): the roles must install what they need.
BASE_PACKAGES=systemd,systemd-sysv,dbus,python3,sudo,ca-certificates,netbase,iproute2,procps,apt-utils,openssh-server,openssh-sftp-server
DOCKERD_LOG=/var/log/flaskops-dockerd.log
# Image metadata set at import. (docker 20.10 cannot set STOPSIGNAL here:
# whoever runs a container passes --stop-signal SIGRTMIN+3 so that systemd
# shuts down cleanly on `docker stop`.)
IMPORT_CHANGES=(--change 'ENV container=docker' --change 'CMD ["/lib/systemd/systemd"]')

LOG_TAG=testbed
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"

engine_answers() { docker info >/dev/null 2>&1; }

cmd_engine() {
  if engine_answers; then log "Docker engine answers"; return 0; fi
  if ! command -v dockerd >/dev/null 2>&1; then
    log "no Docker engine: installing Debian's docker.io"
    apt_install docker.io
  fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    log "starting docker.service"
    as_root systemctl start docker.service || true
  fi
  if ! engine_answers; then
    # No systemd on this machine (a container or a bare VM init): run the
    # daemon directly, detached from this shell, logging to $DOCKERD_LOG.
    log "starting dockerd (log: $DOCKERD_LOG)"
    as_root sh -c "nohup setsid dockerd >'$DOCKERD_LOG' 2>&1 </dev/null &"
  fi
  for _ in $(seq 1 60); do
    engine_answers && { log "Docker engine answers"; return 0; }
    sleep 1
  done
  tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
  die "the Docker engine did not answer within 60 s"
}

suite_version() {
  case "$1" in
    bookworm) echo 12 ;;
    trixie) echo 13 ;;
    *) die "unknown Debian suite '$1' (known: bookworm, trixie)" ;;
  esac
}

# The recipe of an image: everything that changes what ends up in it. Its
# hash is the image tag, so an image is rebuilt exactly when its recipe moves.
image_recipe() {
  local suite=$1
  printf 'suite=%s\nmirror=%s\nsecurity=%s\npackages=%s\nimport=%s\n' \
    "$suite" "$MIRROR" "$SECURITY_MIRROR" "$BASE_PACKAGES" "${IMPORT_CHANGES[*]}"
  declare -f write_rootfs_config
}

image_name() {
  local suite=$1 hash
  suite_version "$suite" >/dev/null
  hash=$(image_recipe "$suite" | sha256sum | cut -c1-12)
  echo "$IMAGE_REPO:$suite-$hash"
}

# Configuration written into the debootstrapped tree before it is imported.
write_rootfs_config() {
  local root=$1 suite=$2
  cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $suite main
deb $MIRROR $suite-updates main
deb $SECURITY_MIRROR $suite-security main
EOF
  # Each container gets its own machine id at boot.
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  # Units that make no sense in a container and only slow boots down.
  local unit
  for unit in getty@tty1.service console-getty.service systemd-remount-fs.service \
    systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  echo "flaskops-host" >"$root/etc/hostname"
  # Ansible and testinfra reach a host over SSH with no sshd listening: the
  # scenarios' ProxyCommand (.config/molecule/config.yml) starts this
  # script with `docker exec`, once per multiplexed connection, and it
  # serves that one connection on its stdin and stdout. So the service stays
  # off at boot (a role that needs sshd enables and starts it), and each
  # container makes its own host keys the first time it is reached.
  rm -f "$root"/etc/ssh/ssh_host_*_key "$root"/etc/ssh/ssh_host_*_key.pub \
    "$root/etc/systemd/system/multi-user.target.wants/ssh.service"
  # The controller's public key is mounted at /etc/flaskops-testbed/ as its
  # owner on the controller made it: this sshd alone reads it there, and
  # root's own ~/.ssh stays the host's.
  cat >"$root/usr/local/sbin/flaskops-testbed-sshd" <<'SCRIPT'
#!/bin/sh
# One SSH connection on stdin and stdout (scripts/testbed.sh).
mkdir -p /run/sshd
# Two first connections at once must not write one key twice.
flock /run/flaskops-testbed-keygen.lock ssh-keygen -A >/dev/null 2>&1
exec /usr/sbin/sshd -i -o AuthorizedKeysFile=/etc/flaskops-testbed/authorized_keys -o StrictModes=no
SCRIPT
  chmod 0755 "$root/usr/local/sbin/flaskops-testbed-sshd"
  # A fresh cloud image has no package lists and no cached .deb files.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
}

build_image() {
  local suite=$1 name root
  name=$(image_name "$suite")
  if docker image inspect "$name" >/dev/null 2>&1; then
    log "reusing $name"
  else
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    root=$(mktemp -d "${TMPDIR:-/tmp}/flaskops-rootfs-$suite.XXXXXX")
    # shellcheck disable=SC2064
    trap "as_root rm -rf '$root'" RETURN
    log "debootstrap $suite from $MIRROR (about a minute)"
    retry 3 as_root debootstrap --variant=minbase --include="$BASE_PACKAGES" \
      "$suite" "$root" "$MIRROR" >"$CACHE_DIR/debootstrap-$suite.log" 2>&1 \
      || { tail -n 30 "$CACHE_DIR/debootstrap-$suite.log" >&2; die "debootstrap $suite failed"; }
    write_rootfs_config "$root" "$suite"
    log "importing $name"
    as_root tar -C "$root" --numeric-owner -c . | docker import "${IMPORT_CHANGES[@]}" \
      --message "flaskops.stack base image, Debian $suite" - "$name" >/dev/null
  fi
  # A stable alias the scenarios and inventories name; it always points at
  # the image of the current recipe.
  docker tag "$name" "$IMAGE_REPO:$suite"
  echo "$name"
}

cmd_image() {
  local suites=("$@") suite
  [ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)
  mkdir -p "$CACHE_DIR"
  cmd_engine
  cmd_ssh_key >/dev/null
  for suite in "${suites[@]}"; do
    suite_version "$suite" >/dev/null
    build_image "$suite"
  done
}

# The key pair the controller logs in to the hosts as root with; the
# scenarios (.config/molecule/config.yml) mount its public half into each
# host and name its path under the checkout's .cache, whatever
# FLASKOPS_CACHE_DIR says.
cmd_ssh_key() {
  local dir="$REPO_ROOT/.cache/testbed-ssh"
  command -v ssh-keygen >/dev/null 2>&1 || apt_install openssh-client
  mkdir -p "$dir"
  if [ ! -f "$dir/id_ed25519" ] || [ ! -s "$dir/id_ed25519" ] || [ ! -f "$dir/id_ed25519.pub" ]; then
    # (Docker makes a directory where a mount's source is missing.)
    rm -rf "$dir/id_ed25519" "$dir/id_ed25519.pub"
    ssh-keygen -q -t ed25519 -N '' -C flaskops-testbed -f "$dir/id_ed25519" >/dev/null
  fi
  chmod 0644 "$dir/id_ed25519.pub"
  echo "$dir/id_ed25519"
}

cmd_ca() {
  local out="$CACHE_DIR/extra-ca.pem" src=${FLASKOPS_EXTRA_CA_CERTS:-}
  mkdir -p "$CACHE_DIR"
  if [ "$src" = none ]; then
    rm -f "$out"; echo ""; return 0
  fi
  if [ -n "$src" ]; then
    [ -r "$src" ] || die "FLASKOPS_EXTRA_CA_CERTS=$src is not a readable file"
    grep -q 'BEGIN CERTIFICATE' "$src" || die "FLASKOPS_EXTRA_CA_CERTS=$src holds no PEM certificate"
    cp "$src" "$out.$$.tmp"
  else
    shopt -s nullglob
    local found=(/usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/*/*.crt)
    shopt -u nullglob
    if [ ${#found[@]} -eq 0 ]; then rm -f "$out"; echo ""; return 0; fi
    cat "${found[@]}" >"$out.$$.tmp"
  fi
  mv "$out.$$.tmp" "$out"
  echo "$out"
}

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case "$cmd" in
    engine) cmd_engine ;;
    image) cmd_image "$@" ;;
    image-name) image_name "${1:?usage: testbed.sh image-name SUITE}" ;;
    ca) cmd_ca ;;
    ssh-key) cmd_ssh_key ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

main "$@"
