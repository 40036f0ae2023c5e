#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection at the path ansible-test
# needs (.../ansible_collections/flaskops/stack). --venv: no container images
# can be pulled here, so each test gets its own virtualenv instead.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FLASKOPS_VENV:-$REPO_ROOT/.venv}
LOG_TAG=sanity
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"
export PATH="$VENV/bin:$PATH"
work="$REPO_ROOT/.cache/sanity/ansible_collections/flaskops/stack"
py=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# The shebang/shellcheck test checks our shell scripts only where shellcheck exists.
if ! command -v shellcheck >/dev/null 2>&1; then
  log "installing Debian's shellcheck"
  apt_install shellcheck
fi
"$VENV/bin/python" "$REPO_ROOT/scripts/ansible-test-pip-bootstrap.py" >&2
rm -rf "$work" && mkdir -p "$work"
# Exactly the files git would ship: tracked ones plus new, non-ignored ones
# (deleted ones left out). $1 is expanded by the inner sh, not here.
# shellcheck disable=SC2016
(cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard \
  | xargs -0 -n 1 sh -c 'if [ -e "$1" ]; then printf "%s\0" "$1"; fi' _ \
  | tar --null -T - -cf -) | tar -C "$work" -xf -
cd "$work"
# ansible-test finds the collection's files through git.
git init -q && git add -A
exec ansible-test sanity --venv --python "$py" --color no "$@"
