"""Requests each path over HTTPS exactly as given (no normalisation by the
client); prints [[status, body], ...] as JSON. argv: the paths as JSON."""
import http.client
import json
import ssl
import sys

ctx = ssl._create_unverified_context()
out = []
for path in json.loads(sys.argv[1]):
    conn = http.client.HTTPSConnection("127.0.0.1", 443, timeout=15, context=ctx)
    conn.request("GET", path)
    r = conn.getresponse()
    out.append([r.status, r.read().decode("utf-8", "replace")])
    conn.close()
print(json.dumps(out))
