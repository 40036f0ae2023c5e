"""Prints, as hex DER, the certificate nginx on 127.0.0.1:443 presents for
a server name (SNI). argv: the name."""
import socket
import ssl
import sys

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", 443), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=sys.argv[1]) as tls:
        sys.stdout.write(tls.getpeercert(binary_form=True).hex())
