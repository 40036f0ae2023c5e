#!/usr/bin/env bash
# Builds the execution environment of execution-environment.yml with
# ansible-builder and runs the collection's site.yml from inside it against a
# fresh test-bed host: the proof that an EE built from the definition holds a
# working flaskops.stack, installed from its tarball.
#
#   scripts/ee-image.sh            (make ee-image)
#
# This machine reaches neither the definition's base image registry nor
# Galaxy, so two things are swapped, and nothing else:
# - the base image is the test bed's Debian image (Python 3.11), with pip
#   and the test bed's extra CA added before ansible-builder's own steps;
# - the dependency collections are the ones the pinned `ansible` package
#   holds, copied into the image beside the collection's offline install.
# The run reaches the host through the Docker engine (the EE gets the docker
# CLI and socket, and community.docker, mounted for the run only: they are
# test plumbing, not part of the EE). It runs site.yml twice: the second
# run must change nothing; then the app answers through nginx on the host.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=ee-image
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"
cd "$REPO_ROOT"
DISTRO=bookworm
HOST=flaskops-ee-target
TAG=flaskops-stack-ee:test

"$REPO_ROOT/scripts/testbed.sh" engine
"$REPO_ROOT/scripts/testbed.sh" image "$DISTRO" >/dev/null
base_image=$("$REPO_ROOT/scripts/testbed.sh" image-name "$DISTRO")
extra_ca=$("$REPO_ROOT/scripts/testbed.sh" ca)
# The collections of the pinned `ansible` package (requirements/controller.txt).
collections_src=$("$REPO_ROOT/.venv/bin/python" -c 'import ansible_collections; print(list(ansible_collections.__path__)[0])')
use_release_tools

version=$(python -c "import yaml; print(yaml.safe_load(open('galaxy.yml'))['version'])")
work="$REPO_ROOT/.cache/ee-image"
rm -rf "$work" && mkdir -p "$work/collections"
ansible-galaxy collection build . --output-path "$work/collections" >/dev/null

# The dependency collections as the pinned `ansible` package installed them
# (it leaves out files their FILES.json lists, such as CI settings, so they
# cannot be packed into artifacts again): copied into the image's
# collections path after the collection's own offline install.
deps=$(python -c "import yaml; print(' '.join(yaml.safe_load(open('galaxy.yml'))['dependencies']))")
for dep in $deps; do
  dir="$collections_src/${dep%%.*}/${dep#*.}"
  [ -f "$dir/MANIFEST.json" ] || die "$dep is not in the pinned ansible package ($dir)"
  mkdir -p "$work/deps/ansible_collections/${dep%%.*}"
  cp -a "$dir" "$work/deps/ansible_collections/${dep%%.*}/"
done
find "$work/deps" -name __pycache__ -prune -exec rm -rf {} +
cp "${extra_ca:-/dev/null}" "$work/extra-ca.pem"

# The definition with the two swaps above; everything else as it is.
python - "$base_image" "$work" <<'PY'
import glob, os, sys, yaml
base_image, work = sys.argv[1:]
ee = yaml.safe_load(open("execution-environment.yml"))
ee["images"]["base_image"]["name"] = base_image
# Debian's python3 is there; ansible-builder must not install one with dnf.
ee["dependencies"]["python_interpreter"] = {"python_path": "/usr/bin/python3"}
tarballs = sorted(os.path.relpath(p, work) for p in glob.glob(os.path.join(work, "collections", "*.tar.gz")))
ee["dependencies"]["galaxy"] = {"collections": [{"name": t, "type": "file"} for t in tarballs]}
ee["additional_build_files"] = [{"src": t, "dest": "collections"} for t in tarballs] + [
    {"src": "extra-ca.pem", "dest": "configs"}, {"src": "deps", "dest": "deps"}]
ee["build_arg_defaults"] = {"ANSIBLE_GALAXY_CLI_COLLECTION_OPTS": "--offline --no-deps"}
ee.setdefault("options", {})["package_manager_path"] = "/usr/bin/apt-get"
# pip comes from Debian (python3-pip, below), not ensurepip (Debian leaves it out).
ee["options"]["skip_pip_install"] = True
ee["options"]["tags"] = ["flaskops-stack-ee:test"]
ee["additional_build_steps"] = {"prepend_base": [
    "COPY _build/configs/extra-ca.pem /usr/local/share/ca-certificates/flaskops-testbed-extra.crt",
    "RUN update-ca-certificates && apt-get update && apt-get install -y --no-install-recommends python3-pip "
    "&& rm -rf /var/lib/apt/lists/*",
    # Debian marks its Python externally managed (PEP 668); an image has no other user of it.
    "ENV PIP_BREAK_SYSTEM_PACKAGES=1",
], "append_final": [
    "COPY _build/deps/ansible_collections/ /usr/share/ansible/collections/ansible_collections/",
]}
yaml.safe_dump(ee, open(os.path.join(work, "execution-environment.yml"), "w"), sort_keys=False)
PY

log "building $TAG from $base_image"
started=$(date +%s)
ansible-builder build -f "$work/execution-environment.yml" -c "$work/context" --container-runtime docker --no-cache \
  -t "$TAG" -v 1 >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; die "ansible-builder build failed"; }
built=$(( $(date +%s) - started ))
log "built $TAG in ${built}s"

# What is in it: the collection at galaxy.yml's version, from the tarball.
docker run --rm "$TAG" ansible-galaxy collection list flaskops.stack --format json \
  | python -c "import json,sys,os; v=[c for p in json.load(sys.stdin).values() for n,c in p.items() if n=='flaskops.stack']; \
sys.exit(0 if v and v[0]['version']==sys.argv[1] else 'flaskops.stack ' + sys.argv[1] + ' is not in the image: ' + str(v))" "$version"

"$REPO_ROOT/scripts/local-host.sh" create "$HOST"
trap 'docker rm -f "$HOST" >/dev/null 2>&1 || true' EXIT
cat > "$work/inventory.yml" <<EOF
all:
  vars:
    ansible_connection: community.docker.docker
    ansible_python_interpreter: /usr/bin/python3
    base_ca_certificates_files: [$( [ -n "$extra_ca" ] && echo /runner/extra-ca.pem )]
  children:
    webservers: {hosts: {$HOST: }}
    appservers: {hosts: {$HOST: }}
    dbservers: {hosts: {$HOST: }}
EOF
head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$work/db-password"
run_site() {
  # As root: the EE's default user may not use the engine's socket.
  docker run --rm --user 0 -v /var/run/docker.sock:/var/run/docker.sock -v "$(command -v docker)":/usr/local/bin/docker:ro \
    -v "$collections_src/community/docker":/runner/collections/ansible_collections/community/docker:ro \
    -v "$work/inventory.yml":/runner/inventory.yml:ro -v "$work/extra-ca.pem":/runner/extra-ca.pem:ro \
    -e ANSIBLE_COLLECTIONS_PATH=/usr/share/ansible/collections:/runner/collections -e ANSIBLE_FORCE_COLOR=0 \
    "$TAG" ansible-playbook -i /runner/inventory.yml flaskops.stack.site \
    -e "postgres_app_password=$(cat "$work/db-password")"
}
started=$(date +%s)
run_site >"$work/site-1.log" 2>&1 || { tail -40 "$work/site-1.log" >&2; die "site.yml from the EE failed"; }
first=$(( $(date +%s) - started ))
started=$(date +%s)
run_site >"$work/site-2.log" 2>&1 || { tail -40 "$work/site-2.log" >&2; die "site.yml's second run from the EE failed"; }
second=$(( $(date +%s) - started ))
grep -Eq "^$HOST +: ok=[0-9]+ +changed=0 .*failed=0" "$work/site-2.log" \
  || { grep -A3 "PLAY RECAP" "$work/site-2.log" >&2; die "the second run from the EE changed something"; }
# Through nginx, uWSGI and Flask to PostgreSQL, on the host.
code=$(docker exec "$HOST" python3 -c '
import ssl, urllib.request
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
print(urllib.request.urlopen("https://127.0.0.1/health", context=ctx, timeout=10).status)')
[ "$code" = 200 ] || die "the app answers $code through nginx"
log "site.yml from $TAG: first run ${first}s, second run ${second}s with changed=0, /health 200 through nginx"
python - "$REPO_ROOT/.cache/measurements/ee-image.json" "$built" "$first" "$second" <<'PY'
import json, os, sys
path, built, first, second = sys.argv[1], *map(int, sys.argv[2:])
os.makedirs(os.path.dirname(path), exist_ok=True)
json.dump({"build_seconds": built, "site_first_seconds": first, "site_second_seconds": second}, open(path, "w"))
PY
