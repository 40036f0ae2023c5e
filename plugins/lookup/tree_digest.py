# Copyright: flaskops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup plugin tree_digest: a content digest of a directory on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
name: tree_digest
author: flaskops.stack maintainers (@flaskops)
short_description: SHA-256 digest of a directory tree's file names and contents
description:
  - Walks a directory on the controller and returns one SHA-256 hex digest of
    every regular file's relative path, executable bit and content, in sorted
    order. Timestamps do not count, so the same tree always gives the same
    digest; the flask_app role names releases after it.
options:
  _terms:
    description: Directories to digest (one result per directory).
    required: true
  exclude:
    description: fnmatch patterns of file or directory names to leave out.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Name the release after the app's source
  ansible.builtin.set_fact:
    release: "{{ lookup('flaskops.stack.tree_digest', '/src/app', exclude=['__pycache__', '*.pyc'])[:12] }}"
"""

RETURN = r"""
_raw:
  description: One lowercase hex SHA-256 digest per directory.
  type: list
  elements: str
"""

import fnmatch
import hashlib
import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase


def digest_tree(root: str, exclude: list[str]) -> str:
    """Digest the regular files under root, skipping names that match exclude."""
    digest = hashlib.sha256()

    def excluded(name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in exclude)

    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not excluded(d))
        for name in sorted(f for f in files if not excluded(f)):
            path = os.path.join(current, name)
            if not os.path.isfile(path):
                continue
            relative = os.path.relpath(path, root)
            executable = os.access(path, os.X_OK)
            digest.update(f"{relative}\0{int(executable)}\0".encode())
            with open(path, "rb") as handle:
                for chunk in iter(lambda h=handle: h.read(1 << 16), b""):
                    digest.update(chunk)
            digest.update(b"\0")
    return digest.hexdigest()


class LookupModule(LookupBase):
    """Return the digest of each directory given."""

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        exclude = self.get_option("exclude")
        results = []
        for term in terms:
            if not os.path.isdir(term):
                raise AnsibleLookupError(f"tree_digest: {term} is not a directory on the controller")
            results.append(digest_tree(term, exclude))
        return results
