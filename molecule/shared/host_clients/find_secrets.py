"""Walks the whole filesystem but /proc, /sys and /dev (other mounts below /
included) and reads every regular file that others may read, looking for
each secret.

argv: {name: secret} as JSON. Prints {"found": {name: [path]}, "errors":
[what could not be listed or read], "files": how many were read} as JSON.
"""
import json
import os
import stat
import sys

wanted = {name: value.encode() for name, value in json.loads(sys.argv[1]).items()}
longest = max(len(value) for value in wanted.values())
found, errors, files = {name: [] for name in wanted}, [], 0


def search(path):
    """Record each secret found in the file at path (also across 1 MiB chunk borders)."""
    tail = b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            block = tail + chunk
            for name, value in wanted.items():
                if value in block and path not in found[name]:
                    found[name].append(path)
            tail = block[-longest:]


for root, dirs, names in os.walk("/", onerror=lambda exc: errors.append(f"{exc.filename}: {exc.strerror}")):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for name in names:
        path = os.path.join(root, name)
        try:
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_IROTH:
                search(path)
                files += 1
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror}")
print(json.dumps({"found": found, "errors": errors, "files": files}))
