"""One HTTP(S) request; prints {"status", "headers", "body"} as JSON.

argv: method url headers-json body tls-verify(0/1) body-size
A body-size > 0 sends that many bytes instead of the body. No redirect is
followed.
"""
import http.client
import json
import ssl
import sys
import urllib.parse

method, url, headers, body, verify = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
size = int(sys.argv[6])
u = urllib.parse.urlsplit(url)
if u.scheme == "https":
    ctx = ssl.create_default_context() if verify else ssl._create_unverified_context()
    conn = http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=15, context=ctx)
else:
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=15)
payload = b"x" * size if size > 0 else (body.encode() or None)
conn.request(method, (u.path or "/") + ("?" + u.query if u.query else ""), body=payload, headers=headers)
r = conn.getresponse()
data = r.read()
print(json.dumps({"status": r.status, "headers": [[k.lower(), v] for k, v in r.getheaders()],
                  "body": data.decode("utf-8", "replace")}))
