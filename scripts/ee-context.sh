#!/usr/bin/env bash
# Checks the execution environment definitions: builds the collection tarball
# where execution-environment.yml expects it, runs `ansible-builder create`
# and checks the build context it writes (the Containerfile installs
# ansible-core, ansible-runner and this collection's tarball on the named
# base image), then installs the tarball and has ansible-builder introspect
# it, which reads meta/execution-environment.yml. Building the image needs
# the base image's registry and Galaxy, which this machine cannot reach.
#
#   scripts/ee-context.sh
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=ee-context
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"
use_release_tools
cd "$REPO_ROOT"

version=$(python -c "import yaml; print(yaml.safe_load(open('galaxy.yml'))['version'])")
tarball="collections/flaskops-stack-$version.tar.gz"
# The definition names the tarball of galaxy.yml's version, in both places.
python - "$tarball" <<'PY' || die "execution-environment.yml does not name $tarball (the version of galaxy.yml)"
import sys, yaml
ee = yaml.safe_load(open("execution-environment.yml"))
want = sys.argv[1]
sources = [c["name"] for c in ee["dependencies"]["galaxy"]["collections"] if c.get("type") == "file"]
files = [f["src"] for f in ee.get("additional_build_files", [])]
sys.exit(0 if sources == [want] and files == [want] else 1)
PY
rm -rf collections && mkdir -p collections
ansible-galaxy collection build . --output-path collections >/dev/null

context="$REPO_ROOT/.cache/ee-context"
rm -rf "$context"
ansible-builder create -f execution-environment.yml -c "$context" --output-filename Containerfile >/dev/null
containerfile="$context/Containerfile"
[ -f "$containerfile" ] || die "ansible-builder wrote no $containerfile"
base=$(python -c "import yaml; print(yaml.safe_load(open('execution-environment.yml'))['images']['base_image']['name'])")
grep -q "^ARG EE_BASE_IMAGE=\"$base\"" "$containerfile" || die "the Containerfile does not start from $base"
grep -q '^ARG ANSIBLE_INSTALL_REFS=".*ansible-core==.*ansible-runner==' "$containerfile" \
  || die "the Containerfile does not install pinned ansible-core and ansible-runner"
cmp -s "$context/_build/collections/$(basename "$tarball")" "$tarball" \
  || die "the context does not carry $tarball"
grep -q "$tarball" "$context/_build/requirements.yml" || die "the context's requirements.yml does not install $tarball"
grep -q 'ansible-galaxy collection install' "$containerfile" || die "the Containerfile installs no collection"

# The collection's own EE metadata, as ansible-builder reads it from an
# installed collection: the keys it knows, files that exist, and
# `ansible-builder introspect` reading them without an error.
installed=$(mktemp -d "${TMPDIR:-/tmp}/flaskops-ee.XXXXXX")
trap 'rm -rf "$installed"' EXIT
# --force: this checkout's own link (ansible.cfg's collections_path) holds the same version.
ansible-galaxy collection install "$tarball" -p "$installed" --no-deps --force >/dev/null 2>&1
root="$installed/ansible_collections/flaskops/stack"
python - "$root" <<'PY' || die "the installed collection's meta/execution-environment.yml is not what ansible-builder reads"
import os, sys, yaml
root = sys.argv[1]
meta = yaml.safe_load(open(os.path.join(root, "meta", "execution-environment.yml")))
assert meta.get("version") == 1, f"version must be 1, got {meta.get('version')!r}"
deps = meta.get("dependencies")
assert isinstance(deps, dict) and deps, "dependencies must name the python and system files"
assert set(deps) <= {"python", "system"}, f"unknown dependency kinds: {sorted(set(deps) - {'python', 'system'})}"
for kind, path in deps.items():
    assert not os.path.isabs(path), f"{kind}: {path} must be relative to the collection root"
    assert os.path.isfile(os.path.join(root, path)), f"{kind}: {path} is not in the installed collection"
PY
ansible-builder introspect "$installed" >"$installed/introspect.txt" 2>&1 \
  || { cat "$installed/introspect.txt" >&2; die "ansible-builder introspect failed on the installed collection"; }
rm -rf collections
log "ansible-builder create: $context (base $base, $(basename "$tarball")); introspect reads meta/execution-environment.yml"
