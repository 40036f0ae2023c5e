"""Prints {fd: file status flags} of each listening TCP socket a process
holds, as JSON (os.O_NONBLOCK tells a non-blocking one). argv: the PID."""
import json
import os
import sys

pid = sys.argv[1]
listening = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    with open(table) as rows:
        for row in rows.read().splitlines()[1:]:
            field = row.split()
            if field[3] == "0A":  # TCP_LISTEN
                listening.add(field[9])  # the socket's inode
flags = {}
for fd in os.listdir(f"/proc/{pid}/fd"):
    target = os.readlink(f"/proc/{pid}/fd/{fd}")
    if target.startswith("socket:[") and target[8:-1] in listening:
        with open(f"/proc/{pid}/fdinfo/{fd}") as info:
            flags[fd] = int(next(line.split()[1] for line in info if line.startswith("flags:")), 8)
print(json.dumps(flags))
