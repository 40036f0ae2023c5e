# Managed by the flaskops.stack `exporters` role.
"""Writes what no packaged exporter reports into the node exporter's
textfile directory, one *.prom file per kind, each replaced whole (written
beside it, then renamed) so that a scrape never reads half a file.

  python3 flaskops-metrics.py CONFIG.json

CONFIG: {"textfile_dir": DIR, "interval_seconds": N, "uwsgi": {app: socket},
"pgbackrest": [{"stanza": S, "max_age": SECONDS}], "tls": {site: certificate
file}}.

- uWSGI: connections waiting on each app's listening socket and its backlog,
  from the kernel (ss): uWSGI's own stats report 0 for a unix socket.
- pgBackRest: when the newest backup of each stanza ended, how old it may
  be, and the repository's status code, from `pgbackrest info` run as the
  postgres user.
- TLS: when each site's certificate expires (openssl).
A kind that fails to collect, whole or in part, keeps no stale value: its
file says so (flaskops_collector_success 0, which the MetricsCollectorFailing
alert watches), with what was collected, and the failure goes to stderr
(the unit's journal). The run fails only when it cannot read its
configuration or write the files. Each file also says when it was written
and how often the collector runs (interval_seconds, from its timer): a
collector that stopped running leaves files whose values go stale, and the
same alert watches their age.
"""
import datetime
import json
import os
import subprocess
import sys
import time

# Seconds any one command may take: a hung one must not hold the timer.
TIMEOUT = 60


def quote(value):
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def sample(name, labels, value):
    inner = ",".join(f"{key}={quote(val)}" for key, val in labels.items())
    return f"{name}{{{inner}}} {value}"


def listen_queue(socket_name):
    """(waiting, backlog) of a listening socket, or None if none listens."""
    if socket_name.startswith("/"):
        command = ["ss", "-Hxl", "src", socket_name]
    else:
        port = socket_name.rsplit(":", 1)[1]
        command = ["ss", "-Htl", f"sport = :{port}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    rows = [line.split() for line in output.splitlines() if line.strip()]
    if not rows:
        return None
    # unix rows start with the netid (u_str), tcp rows with the state.
    first = 2 if rows[0][0].startswith("u_") else 1
    return (sum(int(row[first]) for row in rows), max(int(row[first + 1]) for row in rows))


def uwsgi(sockets):
    lines = [
        "# HELP flaskops_uwsgi_socket_up Whether something listens on the app's socket.",
        "# TYPE flaskops_uwsgi_socket_up gauge",
        "# HELP flaskops_uwsgi_listen_queue Connections waiting on the app's listening socket.",
        "# TYPE flaskops_uwsgi_listen_queue gauge",
        "# HELP flaskops_uwsgi_listen_queue_max The backlog of the app's listening socket.",
        "# TYPE flaskops_uwsgi_listen_queue_max gauge",
    ]
    for app, socket_name in sorted(sockets.items()):
        found = listen_queue(socket_name)
        lines.append(sample("flaskops_uwsgi_socket_up", {"app": app}, int(found is not None)))
        if found is not None:
            lines.append(sample("flaskops_uwsgi_listen_queue", {"app": app}, found[0]))
            lines.append(sample("flaskops_uwsgi_listen_queue_max", {"app": app}, found[1]))
    return lines


def pgbackrest(stanzas):
    lines = [
        "# HELP flaskops_pgbackrest_backup_newest_seconds When the newest backup ended (0: none).",
        "# TYPE flaskops_pgbackrest_backup_newest_seconds gauge",
        "# HELP flaskops_pgbackrest_backup_max_age_seconds How old the newest backup may be, from its schedule.",
        "# TYPE flaskops_pgbackrest_backup_max_age_seconds gauge",
        "# HELP flaskops_pgbackrest_status_code pgBackRest's status code of the stanza (0: ok).",
        "# TYPE flaskops_pgbackrest_status_code gauge",
    ]
    for entry in stanzas:
        stanza = entry["stanza"]
        command = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                   "pgbackrest", f"--stanza={stanza}", "--output=json",
                   "--log-level-file=off", "--log-level-console=warn", "info"]
        result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=TIMEOUT)
        info = json.loads(result.stdout)
        found = info[0] if info else {"backup": [], "status": {"code": 99}}
        stops = [backup["timestamp"]["stop"] for backup in found.get("backup", [])]
        labels = {"stanza": stanza}
        lines.append(sample("flaskops_pgbackrest_backup_newest_seconds", labels, max(stops, default=0)))
        lines.append(sample("flaskops_pgbackrest_backup_max_age_seconds", labels, int(entry["max_age"])))
        lines.append(sample("flaskops_pgbackrest_status_code", labels, found["status"]["code"]))
    return lines


def tls(certificates):
    lines = [
        "# HELP flaskops_tls_certificate_not_after_seconds When the site's certificate expires.",
        "# TYPE flaskops_tls_certificate_not_after_seconds gauge",
    ]
    failed = []
    for site, path in sorted(certificates.items()):
        # One site's missing certificate (an ACME one not obtained yet) must
        # not hide the others'.
        try:
            output = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", path],
                                    capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
            # notAfter=Mar  5 12:00:00 2027 GMT
            stamp = datetime.datetime.strptime(output.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
        except (OSError, ValueError, IndexError, subprocess.SubprocessError) as error:
            failed.append(f"{site}: {error} {getattr(error, 'stderr', '') or ''}".strip())
            continue
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
        lines.append(sample("flaskops_tls_certificate_not_after_seconds",
                            {"site": site, "file": path}, int(stamp.timestamp())))
    if failed:
        raise Partial(lines, "; ".join(failed))
    return lines


class Partial(Exception):
    """Some of a kind was collected (lines), some not (the message)."""

    def __init__(self, lines, message):
        super().__init__(message)
        self.lines = lines


def write(directory, kind, lines, success, interval):
    lines = lines + [
        "# HELP flaskops_collector_success Whether the last run collected this kind.",
        "# TYPE flaskops_collector_success gauge",
        sample("flaskops_collector_success", {"kind": kind}, int(success)),
        "# HELP flaskops_collector_run_seconds When the last run wrote this kind (Unix time).",
        "# TYPE flaskops_collector_run_seconds gauge",
        sample("flaskops_collector_run_seconds", {"kind": kind}, int(time.time())),
    ]
    # (A configuration from before the role wrote the interval: none yet.)
    if interval is not None:
        lines += [
            "# HELP flaskops_collector_interval_seconds How often the collector runs.",
            "# TYPE flaskops_collector_interval_seconds gauge",
            sample("flaskops_collector_interval_seconds", {"kind": kind}, interval),
        ]
    path = os.path.join(directory, f"flaskops_{kind}.prom")
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)


def main():
    with open(sys.argv[1], encoding="utf-8") as handle:
        config = json.load(handle)
    interval = config.get("interval_seconds")
    for kind, collect in (("uwsgi", uwsgi), ("pgbackrest", pgbackrest), ("tls", tls)):
        path = os.path.join(config["textfile_dir"], f"flaskops_{kind}.prom")
        if not config.get(kind):
            if os.path.exists(path):
                os.remove(path)
            continue
        try:
            write(config["textfile_dir"], kind, collect(config[kind]), True, interval)
        except Partial as error:
            print(f"flaskops-metrics: {kind}: {error}", file=sys.stderr)
            write(config["textfile_dir"], kind, error.lines, False, interval)
        except (OSError, ValueError, KeyError, IndexError, TypeError, subprocess.SubprocessError) as error:
            detail = getattr(error, "stderr", "") or ""
            print(f"flaskops-metrics: {kind}: {error} {detail}".strip(), file=sys.stderr)
            write(config["textfile_dir"], kind, [], False, interval)


if __name__ == "__main__":
    main()
