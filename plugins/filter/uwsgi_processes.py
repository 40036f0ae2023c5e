# Copyright: flaskops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter plugin uwsgi_processes: the uwsgi role's default worker count for a host."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

# uWSGI processes per vCPU by workload: the one place the rule lives. The
# uwsgi role's default (uwsgi_processes) and the database's connection budget
# (playbooks/learn_addresses.yml) both apply it; roles/uwsgi/defaults/main.yml
# says why these numbers.
PER_VCPU = {"cpu": 2, "io": 4}


def uwsgi_processes(vcpus, workload):
    """uWSGI processes for a host with vcpus vCPUs and an app of this workload ("cpu" or "io")."""
    if workload not in PER_VCPU:
        raise AnsibleFilterError(f"uwsgi_workload must be one of {', '.join(PER_VCPU)}, got {workload!r}")
    try:
        count = int(vcpus)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"uwsgi_processes: vCPUs must be a number, got {vcpus!r}") from exc
    if count < 1:
        raise AnsibleFilterError(f"uwsgi_processes: vCPUs must be at least 1, got {count}")
    return count * PER_VCPU[workload]


class FilterModule:
    """flaskops.stack filters."""

    def filters(self):
        return {"uwsgi_processes": uwsgi_processes}
