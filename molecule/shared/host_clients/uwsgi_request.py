"""One request over the uwsgi protocol; prints {"status", "headers", "body"} as JSON.

argv: socket (path or host:port) method path headers-json body
"""
import json
import sys

from uwsgi_protocol import uwsgi_request

status, hdrs, body = uwsgi_request(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5].encode())
print(json.dumps({"status": status, "headers": hdrs, "body": body}))
