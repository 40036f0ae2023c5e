"""Sends PostgreSQL's startup message and prints the server's first answer:
"R" (it asks for a password: pg_hba admits this host), "E:" and the
message (refused), or "connect:" and the socket error.

argv: server-address user database
"""
import socket
import struct
import sys

try:
    s = socket.create_connection((sys.argv[1], 5432), timeout=5)
except OSError as exc:
    print("connect:" + type(exc).__name__)
    sys.exit()
user, database = sys.argv[2], sys.argv[3]
params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
with s:
    s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    kind = s.recv(1)
    rest = s.recv(4096)
print(kind.decode() + (":" + rest[4:].decode("utf-8", "replace") if kind == b"E" else ""))
