"""Requests each path over HTTPS exactly as given (no normalisation by the
client); prints [[status, body], ...] as JSON, in the order given.
argv: the paths as JSON, and optionally how many requests to have in flight
at once (default 1: one after the other). A request that fails without an
answer counts as status 0, its error as the body."""
import http.client
import json
import ssl
import sys
from concurrent.futures import ThreadPoolExecutor

ctx = ssl._create_unverified_context()


def get(path: str) -> list:
    conn = http.client.HTTPSConnection("127.0.0.1", 443, timeout=15, context=ctx)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return [r.status, r.read().decode("utf-8", "replace")]
    except (OSError, http.client.HTTPException) as exc:
        return [0, repr(exc)]
    finally:
        conn.close()


with ThreadPoolExecutor(max_workers=int(sys.argv[2]) if len(sys.argv) > 2 else 1) as pool:
    print(json.dumps(list(pool.map(get, json.loads(sys.argv[1])))))
