# Asks a uWSGI server for one path over the uwsgi protocol, as nginx does.
# argv: SOCKET (a path, or host:port) PATH STATUS_BELOW TIMEOUT_SECONDS.
# Tries until the answer's status is below STATUS_BELOW or the time is up;
# prints the last status line (or error) and exits 0 on success, 1 otherwise.
import socket
import struct
import sys
import time

address, path, below, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
env = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path.split("?")[0],
       "QUERY_STRING": path.partition("?")[2], "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost",
       "SERVER_PORT": "80", "HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1",
       "HTTP_USER_AGENT": "flaskops-health-check"}
body = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                for k, v in ((k.encode(), v.encode()) for k, v in env.items()))
packet = struct.pack("<BHB", 0, len(body), 0) + body
deadline = time.monotonic() + timeout
said = "no answer"
while True:
    try:
        if address.startswith("/"):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(max(deadline - time.monotonic(), 1))
            conn.connect(address)
        else:
            host, port = address.rsplit(":", 1)
            conn = socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)),
                                            timeout=max(deadline - time.monotonic(), 1))
        with conn:
            conn.sendall(packet)
            head = b""
            while b"\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
        said = head.split(b"\n", 1)[0].decode("latin-1").strip() or "connection closed without an answer"
        parts = said.split()
        if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < below:
            print(f"GET {path}: {said}")
            sys.exit(0)
    except OSError as exc:
        said = f"{type(exc).__name__}: {exc}"
    if time.monotonic() >= deadline:
        print(f"GET {path} for {timeout:g} s: last answer {said}")
        sys.exit(1)
    time.sleep(1)
