"""Prints what a uWSGI stats server says (JSON). argv: its unix socket."""
import socket
import sys

with socket.socket(socket.AF_UNIX) as s:
    s.connect(sys.argv[1])
    print(b"".join(iter(lambda: s.recv(65536), b"")).decode())
