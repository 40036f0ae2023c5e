"""The uwsgi protocol as nginx's uwsgi_pass speaks it, for the other clients."""
import socket
import struct


def uwsgi_request(where, method, path, headers, body, timeout=15):
    """Send one request to a uWSGI socket (a path, or host:port); return (status, headers, body)."""
    query = path.split("?", 1)[1] if "?" in path else ""
    env = {"REQUEST_METHOD": method, "REQUEST_URI": path, "PATH_INFO": path.split("?", 1)[0], "QUERY_STRING": query,
           "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1",
           "HTTP_HOST": "localhost", "CONTENT_LENGTH": str(len(body)), "wsgi.url_scheme": "http"}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        env[key if key == "CONTENT_TYPE" else "HTTP_" + key] = value
    packet = b"".join(struct.pack("<H", len(x.encode())) + x.encode() for kv in env.items() for x in kv)
    if where.startswith("/"):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        conn.connect(where)
    else:
        host, port = where.rsplit(":", 1)
        conn = socket.create_connection((host, int(port)), timeout=timeout)
    with conn:
        conn.sendall(struct.pack("<BHB", 0, len(packet), 0) + packet + body)
        data = b"".join(iter(lambda: conn.recv(65536), b""))
    head, _sep, payload = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = [[line.split(":", 1)[0].strip().lower(), line.split(":", 1)[1].strip()] for line in lines[1:] if ":" in line]
    return int(lines[0].split()[1]), hdrs, payload.decode("utf-8", "replace")
