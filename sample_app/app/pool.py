"""How the app's connection pool replaces connections PostgreSQL has ended.

A pooled connection dies when the server ends its session: a restart,
`pg_terminate_backend()`, `idle_session_timeout`. The server then sends its
last message (FATAL 57P01 and the like) and closes the socket, so the idle
connection's socket turns readable. Little else arrives on an idle
connection (a notice, or a notification after LISTEN, which this app does
not send), and at worst such a connection is replaced for nothing. Looking
costs one poll(2) at checkout. SQLAlchemy's `pool_pre_ping` would send a
query instead (psycopg's is an empty one, `;`): a round trip on every
checkout, which is every request.

A peer that vanished without closing anything (a host powered off, a
firewall dropping an idle flow) leaves no trace on the socket; a ping would
wait out TCP's timeouts there too. `pool_recycle` bounds how old a
connection gets.
"""

from __future__ import annotations

import select

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError


def ended_by_server(dbapi_connection) -> bool:
    """True when an idle connection's server has said or done anything: its
    session is over (or in a state the pool cannot hand out)."""
    if dbapi_connection.closed:  # also when psycopg found it broken
        return True
    poller = select.poll()
    # Errors and hang-ups are reported whatever is asked for.
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _check_on_checkout(dbapi_connection, _record, _proxy) -> None:
    if ended_by_server(dbapi_connection):
        # The pool discards this connection and connects again in its place,
        # before the request sees either.
        raise DisconnectionError("the server ended this connection's session")


def replace_connections_the_server_ended(engine: Engine) -> None:
    event.listen(engine, "checkout", _check_on_checkout)
