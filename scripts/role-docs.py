"""Write (or check) each role README's variable table from the role's meta/argument_specs.yml.

usage: python3 scripts/role-docs.py [--check]

The table sits between "<!-- BEGIN role variables -->" and
"<!-- END role variables -->" in roles/<role>/README.md. --check exits 1 when
a table differs from what the argument spec says, or when a value in a
role's defaults/main.yml differs from its argument spec default, so that
neither the README nor the spec can drift from the role.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- BEGIN role variables -->", "<!-- END role variables -->"
ROLES = sorted(path.parent.parent.name for path in (ROOT / "roles").glob("*/meta/argument_specs.yml"))


def cell(text: str) -> str:
    text = re.sub(r"[ICB]\(([^)]*)\)", r"`\1`", str(text))
    return text.replace("|", "\\|").replace("\n", " ")


def default_of(spec: dict) -> str:
    if spec.get("required"):
        return "**required**"
    if "default" not in spec:
        return "computed (see `defaults/main.yml`)"
    value = spec["default"]
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    # A scalar dumps as "VALUE\n...\n": drop YAML's document-end marker.
    dumped = yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
    return "`" + dumped.replace("|", "\\|") + "`"


def specs_of(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]


def table(role: str) -> str:
    out = []
    specs = specs_of(role)
    for entry, spec in specs.items():
        title = "### Entry point `main`" if entry == "main" else f"### Entry point `{entry}`"
        out += [title, "", cell(spec["short_description"]), ""]
        # An entry point that takes main's variables (a YAML alias) says so.
        if entry != "main" and spec.get("options") == specs["main"].get("options"):
            out += ["It takes the variables of `main`.", ""]
            continue
        out += ["| variable | type | default | what it does |", "| --- | --- | --- | --- |"]
        for name, option in spec.get("options", {}).items():
            kind = option.get("type", "str")
            if kind == "list" and "elements" in option:
                kind = f"list of {option['elements']}"
            description = option.get("description", "")
            if isinstance(description, list):
                description = " ".join(description)
            if "choices" in option:
                description += " One of: " + ", ".join(f"`{c}`" if c else '`""`' for c in option["choices"]) + "."
            out.append(f"| `{name}` | {kind} | {default_of(option)} | {cell(description)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def defaults_drift(role: str) -> list[str]:
    """Variables whose defaults/main.yml value differs from their argument spec default."""
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    drift = []
    for entry, spec in specs_of(role).items():
        for name, option in (spec.get("options") or {}).items():
            if "default" not in option:
                continue
            if name not in defaults:
                # An argument spec default documents a value; only defaults/main.yml sets it.
                drift.append(f"roles/{role}: {name} has a default in the argument spec ({entry}) "
                             "but none in defaults/main.yml")
            elif defaults[name] != option["default"]:
                drift.append(f"roles/{role}: {name} is {defaults[name]!r} in defaults/main.yml and "
                             f"{option['default']!r} in the argument spec ({entry})")
    return drift


def main() -> int:
    check = "--check" in sys.argv[1:]
    status = 0
    for role in ROLES:
        readme = ROOT / "roles" / role / "README.md"
        text = readme.read_text()
        start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
        wanted = text[:start] + "\n" + table(role) + text[stop:]
        if check:
            if wanted != text:
                print(f"{readme.relative_to(ROOT)}: the variable table is out of date: run python3 scripts/role-docs.py",
                      file=sys.stderr)
                status = 1
            for line in defaults_drift(role):
                print(line, file=sys.stderr)
                status = 1
        else:
            readme.write_text(wanted)
    return status


if __name__ == "__main__":
    sys.exit(main())
