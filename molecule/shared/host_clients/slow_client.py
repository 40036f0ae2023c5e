"""Sends half a request line to nginx on port 80, then nothing; prints how
long the server took to answer or hang up (up to 40 s), "closed" or "open",
and the first bytes it sent."""
import socket
import time

with socket.create_connection(("127.0.0.1", 80)) as s:
    s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    s.settimeout(40)
    start = time.monotonic()
    try:
        data = s.recv(4096)
    except socket.timeout:
        data = None
print(round(time.monotonic() - start, 1), "closed" if data is not None else "open", (data or b"")[:20])
