"""Which rule the firewall role writes for the running Ansible connection,
from SSH_CONNECTION as the host's facts hold it (roles/firewall/vars/main.yml
and templates/firewall.nft.j2, rendered by this checkout's Ansible)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "firewall"
PLAYBOOK_COMMAND = str(Path(sys.executable).with_name("ansible-playbook"))
COMMENT = "ssh: the Ansible connection that wrote this file"

CASES = {
    # sshd -i (inetd, or a ProxyCommand such as `docker exec HOST sshd -i`).
    "UNKNOWN 65535 UNKNOWN 65535": ("", "22", None),
    "10.0.0.5 51234 10.0.0.9 2222": ("10.0.0.5", "2222", "ip saddr { 10.0.0.5 } tcp dport 2222 accept"),
    "2001:db8::5 40000 2001:db8::9 22": ("2001:db8::5", "22", "ip6 saddr { 2001:db8::5 } tcp dport 22 accept"),
    "": ("", "22", None),
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, dict]:
    """For each SSH_CONNECTION of CASES: the client and port the role's vars
    derive, and the rule lines of the rendered rule file that name it."""
    root = tmp_path_factory.mktemp("firewall")
    playbook = root / "render.yml"
    playbook.write_text(f"""
- name: Render the firewall role's view of the connection
  hosts: localhost
  gather_facts: false
  vars_files: ["{ROLE}/vars/main.yml", "{ROLE}/defaults/main.yml"]
  tasks:
    - name: Render
      ansible.builtin.debug:
        msg: "{{{{ {{'client': firewall_ansible_client, 'port': firewall_ansible_port,
                    'rules': lookup('ansible.builtin.template', '{ROLE}/templates/firewall.nft.j2')}} }}}}"
      vars:
        ansible_facts: {{env: {{SSH_CONNECTION: "{{{{ item }}}}"}}}}
        ansible_port: 22
      loop: {json.dumps(list(CASES))}
""")
    env = {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_NOCOLOR": "1", "PATH": str(Path(sys.executable).parent)}
    proc = subprocess.run([PLAYBOOK_COMMAND, "-i", "localhost,", "-c", "local", str(playbook)], capture_output=True,
                          text=True, env=env, timeout=300, check=False, cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    results = report["plays"][0]["tasks"][0]["hosts"]["localhost"]["results"]
    return {r["item"]: dict(r["msg"], rules=[line.strip() for line in r["msg"]["rules"].splitlines() if COMMENT in line])
            for r in results}


@pytest.mark.parametrize("connection", list(CASES), ids=["sshd -i", "IPv4", "IPv6", "none"])
def test_the_rule_for_the_ansible_connection(rendered, connection):
    client, port, rule = CASES[connection]
    got = rendered[connection]
    assert (got["client"], str(got["port"])) == (client, port)
    assert got["rules"] == ([f'{rule} comment "{COMMENT}"'] if rule else [])
