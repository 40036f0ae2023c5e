"""TLS handshakes from a client that allows everything (security level 0),
so that a refused handshake is the server's doing.

argv: port, then either
  handshake MIN MAX CIPHERS   one handshake with TLS versions MIN..MAX
                              ("1.0".."1.3") and an OpenSSL cipher list;
                              prints its result
  suites AUTH                 every pre-1.3 suite this client's OpenSSL can
                              offer with that authentication (auth-ecdsa,
                              auth-rsa), and the anonymous ones, each tried
                              alone over TLS 1.2; prints {suite: result}
A result is ["ok", version, cipher], ["refused", reason] (the server's
alert, e.g. TLSV1_ALERT_PROTOCOL_VERSION) or ["client-cannot", reason] when
this client cannot offer what was asked. Output is JSON.
"""
import json
import socket
import ssl
import sys

VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1, "1.2": ssl.TLSVersion.TLSv1_2,
            "1.3": ssl.TLSVersion.TLSv1_3}
port = int(sys.argv[1])


def attempt(low, high, ciphers):
    """One handshake with 127.0.0.1:port; its result as described above."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        ctx.set_ciphers(ciphers + ":@SECLEVEL=0")
        ctx.minimum_version, ctx.maximum_version = VERSIONS[low], VERSIONS[high]
    except (ssl.SSLError, ValueError) as exc:
        return ["client-cannot", type(exc).__name__]
    try:
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as s:
            return ["ok", s.version(), s.cipher()[0]]
    except ssl.SSLError as exc:
        reason = exc.reason or type(exc).__name__
        return ["client-cannot" if reason == "NO_PROTOCOLS_AVAILABLE" else "refused", reason]
    except OSError as exc:
        return ["refused", type(exc).__name__]


if sys.argv[2] == "handshake":
    print(json.dumps(attempt(*sys.argv[3:6])))
else:
    every = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    every.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    suites = [c["name"] for c in every.get_ciphers() if c["protocol"] != "TLSv1.3"
              and c["auth"] in (sys.argv[3], "auth-null") and c["kea"] in ("kx-ecdhe", "kx-dhe", "kx-rsa")]
    print(json.dumps({name: attempt("1.2", "1.2", name) for name in suites}))
