"""Connects to PostgreSQL with the app's own DATABASE_URL, through libpq
(the app's psycopg), and prints "ok <ssl> <tls version>" from pg_stat_ssl
for its own session, or "error: " and libpq's message.

Run with the app's venv python. argv: env-file variant, where variant is
  as-is       the URL as the app has it
  plain       the same with sslmode=disable
  wrong-ca    sslrootcert pointing at another CA (argv[3], a PEM file)
  wrong-name  the server's address kept (hostaddr) but another name to verify
"""
import json
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

env_file, variant = sys.argv[1], sys.argv[2]
with open(env_file, encoding="utf-8") as f:
    url = next(line.split("=", 1)[1].strip() for line in f if line.startswith("DATABASE_URL="))
url = json.loads(url)  # the role writes each value as a JSON string
parts = urlsplit(url)
query = dict(parse_qsl(parts.query))
netloc = parts.netloc
if variant == "plain":
    query["sslmode"] = "disable"
elif variant == "wrong-ca":
    query["sslrootcert"] = sys.argv[3]
elif variant == "wrong-name":
    query["hostaddr"] = parts.hostname
    netloc = netloc.rsplit("@", 1)[0] + "@not-the-database.invalid" + (f":{parts.port}" if parts.port else "")
elif variant != "as-is":
    sys.exit(f"unknown variant {variant}")
url = urlunsplit((parts.scheme.replace("+psycopg", ""), netloc, parts.path, urlencode(query), ""))
try:
    with psycopg.connect(url, connect_timeout=5) as conn:
        ssl, version = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        print(f"ok {ssl} {version}")
except psycopg.Error as exc:
    print("error: " + " ".join(str(exc).split()))
