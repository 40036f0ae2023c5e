#!/usr/bin/env bash
# Builds the collection tarball and installs it into a collections path, then
# checks that Ansible resolves its roles and playbooks from there.
# FLASKOPS_INSTALLED_COLLECTIONS names that path (default: a temporary one);
# the Makefile keeps it in .cache/installed-collections, where the `default`
# Molecule scenario runs flaskops.stack.site from it.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FLASKOPS_VENV:-$REPO_ROOT/.venv}
export PATH="$VENV/bin:$PATH"
work=$(mktemp -d "${TMPDIR:-/tmp}/flaskops-collection.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Only the temporary path counts: no ansible.cfg, no user or system collections
# (Molecule leaves a copy of this collection in ~/.ansible/collections).
printf '[defaults]\n' >"$work/ansible.cfg"
collections=${FLASKOPS_INSTALLED_COLLECTIONS:-$work/collections}
rm -rf "$collections/ansible_collections/flaskops/stack"
mkdir -p "$collections"
export ANSIBLE_CONFIG="$work/ansible.cfg" ANSIBLE_COLLECTIONS_PATH="$collections"

version=$(python -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['version'])" "$REPO_ROOT/galaxy.yml")
ansible-galaxy collection build "$REPO_ROOT" --output-path "$work/dist" >/dev/null
tarball="$work/dist/flaskops-stack-$version.tar.gz"
[ -f "$tarball" ] || { echo "FAIL: build did not produce $tarball" >&2; exit 1; }

# What must be in the tarball, and what must not.
listing=$(tar -tzf "$tarball")
for want in MANIFEST.json FILES.json README.md meta/runtime.yml roles/base/tasks/main.yml \
            roles/base/meta/argument_specs.yml playbooks/site.yml sample_app/wsgi.py; do
  grep -qx "$want" <<<"$listing" || { echo "FAIL: $want missing from $tarball" >&2; exit 1; }
done
for unwanted in '.venv/' '.cache/' '.git/' 'scripts/' 'molecule/' 'tests/' '__pycache__'; do
  if grep -q "^$unwanted\|/$unwanted" <<<"$listing"; then echo "FAIL: $unwanted shipped in $tarball" >&2; exit 1; fi
done

# --no-deps: the dependencies come from the `ansible` package here (Galaxy may
# be unreachable); they are still declared in galaxy.yml for Galaxy users.
ansible-galaxy collection install "$tarball" -p "$collections" --no-deps >/dev/null
installed="$collections/ansible_collections/flaskops/stack"
[ -f "$installed/MANIFEST.json" ] || { echo "FAIL: install left no MANIFEST.json" >&2; exit 1; }
ansible-galaxy collection list flaskops.stack \
  | grep -q "flaskops.stack *$version" || { echo "FAIL: ansible-galaxy does not list flaskops.stack $version" >&2; exit 1; }

# Ansible resolves the installed role by its FQCN and reads its argument spec.
ansible-doc -t role flaskops.stack.base | grep -q base_ca_certificates_files \
  || { echo "FAIL: ansible-doc cannot read flaskops.stack.base from the installed collection" >&2; exit 1; }
# The installed collection's playbook parses (syntax check, no hosts touched).
(cd "$work" && ansible-playbook --syntax-check -i localhost, flaskops.stack.site >/dev/null) \
  || { echo "FAIL: flaskops.stack.site does not parse from the installed collection" >&2; exit 1; }
echo "collection-test: built $(basename "$tarball") ($(du -h "$tarball" | cut -f1)), installed into $collections and resolved"
