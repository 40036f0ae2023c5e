"""Write (or check) the README's role variable tables from each role's meta/argument_specs.yml.

usage: python3 scripts/role-docs.py [--check]

The tables sit between "<!-- BEGIN role variables -->" and
"<!-- END role variables -->" in README.md. --check exits 1 when they differ
from what the argument specs say, so the README cannot drift from them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN, END = "<!-- BEGIN role variables -->", "<!-- END role variables -->"
ROLES = ["base", "postgres", "flask_app", "uwsgi", "nginx"]


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


def tables() -> str:
    out = []
    for role in ROLES:
        specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        for entry, spec in specs.items():
            title = f"### Role `{role}`" if entry == "main" else f"#### `{role}` entry point `{entry}`"
            out += [title, "", cell(spec["short_description"]), "",
                    "| variable | type | default | what it does |", "| --- | --- | --- | --- |"]
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


def main() -> int:
    text = README.read_text()
    start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    wanted = text[:start] + "\n" + tables() + text[stop:]
    if "--check" in sys.argv[1:]:
        if wanted != text:
            print("README.md role variable tables are out of date: run python3 scripts/role-docs.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
