"""Sends PostgreSQL's startup message and prints the server's first answer:
"R" (it asks for a password: pg_hba admits this host), "E:" and the
message (refused), or "connect:" and the socket error. With "tls" it asks
for TLS first (SSLRequest) and sends the startup message inside it (the
server's certificate is not checked here: pg_connect.py does that);
"notls:" and the answer if the server will not speak TLS.

argv: server-address user database [tls]
"""
import socket
import ssl
import struct
import sys

try:
    s = socket.create_connection((sys.argv[1], 5432), timeout=5)
except OSError as exc:
    print("connect:" + type(exc).__name__)
    sys.exit()
user, database = sys.argv[2], sys.argv[3]
if len(sys.argv) > 4 and sys.argv[4] == "tls":
    s.sendall(struct.pack("!ii", 8, 80877103))
    answer = s.recv(1)
    if answer != b"S":
        print("notls:" + answer.decode("ascii", "replace"))
        sys.exit()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    s = context.wrap_socket(s)
params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
with s:
    s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    kind = s.recv(1)
    rest = s.recv(4096)
print(kind.decode() + (":" + rest[4:].decode("utf-8", "replace") if kind == b"E" else ""))
