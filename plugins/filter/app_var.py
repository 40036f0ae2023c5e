# Copyright: flaskops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter plugin app_var: one app's value of a role variable."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def app_var(app, key, host_vars, role_defaults):
    """The app entry's value of key, else the host's (inventory) value, else the role's default.

    Ansible cannot pass a role a variable only when an app sets it, and a task
    variable that falls back to its own name loops; so the playbooks pass each
    per-app variable with the value the role would have seen without the app
    list when the app does not set it. One key at a time: a default that
    refers to another per-app variable (uwsgi_processes to uwsgi_workload)
    reads that one's app value in turn.
    """
    if not isinstance(app, dict):
        raise AnsibleFilterError(f"app_var: an app must be a dict, got {type(app).__name__}")
    if key in app:
        return app[key]
    if key in host_vars:
        return host_vars[key]
    if key in role_defaults:
        return role_defaults[key]
    raise AnsibleFilterError(f"app_var: {key} is set by neither app {app.get('name', '?')}, the inventory "
                             "nor the role's defaults")


class FilterModule:
    """flaskops.stack filters."""

    def filters(self):
        return {"app_var": app_var}
