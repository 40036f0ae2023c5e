"""record_statuses(): the loop https_load.py and uwsgi_load.py share."""
import json
import os
import time


def record_statuses(request, out: str, stop: str, max_seconds: float, interval: float = 0.0,
                    max_requests: int = 0) -> None:
    """Call request() (which returns a status) until the file stop exists,
    max_seconds have passed or max_requests were made (0: no limit); an
    exception counts as status 0. With an interval, a request starts at
    most once per interval (a bounded load). Writes the statuses to out as JSON."""
    codes, deadline = [], time.monotonic() + max_seconds
    while not os.path.exists(stop) and time.monotonic() < deadline and (not max_requests or len(codes) < max_requests):
        started = time.monotonic()
        try:
            codes.append(request())
        except Exception:  # pylint: disable=broad-exception-caught
            codes.append(0)
        time.sleep(max(0.0, started + interval - time.monotonic()))
    with open(out, "w", encoding="utf-8") as f:
        json.dump(codes, f)
