"""The prerequisites list names every program the scripts, the Makefile and the test harness run.

Shell scripts are parsed by shfmt (its syntax tree, not a regular expression): the first word of
every simple command that is a literal, after wrappers such as `env`, `timeout` or `as_root`.
Python is parsed with `ast`: the literal first element of every argv handed to subprocess, every
`shutil.which("...")`, and the command the harness's `in_netns(ns, "cmd", ...)` runs.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness.node import missing_prerequisites
from tests.prerequisites import LIST_FILE, OPTIONAL, PREINSTALLED, listed_tools, missing_lines, read_list

REPO = Path(__file__).resolve().parents[2]
SHELL_SCRIPTS = sorted([*REPO.glob("scripts/*.sh"), *REPO.glob("tests/e2e/harness/*.sh")])
# The kind route (tests/e2e/kind) is for machines with Docker and kind; it is never run here.
PYTHON_FILES = sorted(
    p for p in [*REPO.glob("scripts/*.py"), *REPO.glob("tests/**/*.py")] if "kind" not in p.relative_to(REPO).parts
)
GROUPS = {"base", "services", "build", "images", "node", "cluster", "test", OPTIONAL}

# The shell's own builtins and keywords-as-commands: they need no package.
BUILTIN_NAMES = """alias bg bind break builtin caller cd command compgen complete compopt continue declare dirs disown
echo enable eval exec exit export false fc fg getopts hash help history jobs kill let local logout mapfile popd printf
pushd pwd read readarray readonly return set shift shopt source suspend test times trap true type typeset ulimit umask
unalias unset wait . : ["""
BASH_BUILTINS = set(BUILTIN_NAMES.split())
# Words that run the command after them (their own options and VAR=value words skipped).
WRAPPERS = {"as_root", "sudo", "exec", "nohup", "nice", "xargs", "env", "timeout"}


def literal(word: dict) -> str | None:
    """The text of a shfmt word made only of literal parts, else None (it holds an expansion)."""
    text = ""
    for part in word.get("Parts", []):
        if part["Type"] in ("Lit", "SglQuoted"):
            text += part["Value"]
        elif part["Type"] == "DblQuoted" and all(q["Type"] == "Lit" for q in part.get("Parts", [])):
            text += "".join(q["Value"] for q in part.get("Parts", []))
        else:
            return None
    return text


def syntax_tree(script: Path) -> dict:
    shfmt = shutil.which("shfmt")
    assert shfmt, "shfmt is on scripts/prerequisites.txt: run `make prerequisites`"
    return json.loads(
        subprocess.run([shfmt, "-tojson"], input=script.read_text(), capture_output=True, text=True, check=True).stdout
    )


def walk(node, calls: list[list[str | None]], functions: set[str]) -> None:
    if isinstance(node, dict):
        if node.get("Type") == "FuncDecl":
            functions.add(node["Name"]["Value"])
        if node.get("Type") == "CallExpr" and node.get("Args"):
            calls.append([literal(a) for a in node["Args"]])
        for value in node.values():
            walk(value, calls, functions)
    elif isinstance(node, list):
        for value in node:
            walk(value, calls, functions)


def commands_of(argv: list[str | None]) -> list[str]:
    """The programs one simple command runs: the wrappers it names, then the command they wrap."""
    found = []
    while argv and argv[0] is not None:
        word, argv = argv[0], argv[1:]
        if word == "command":
            return found + ([argv[1]] if len(argv) > 1 and argv[0] == "-v" and argv[1] else [])
        found.append(word)
        if word not in WRAPPERS:
            break
        while argv and argv[0] is not None and (argv[0].startswith("-") or "=" in argv[0] or argv[0][:1].isdigit()):
            argv = argv[1:]
    return found


def shell_commands(scripts: list[Path]) -> dict[str, set[str]]:
    """Program name -> the scripts that run it (functions defined in any of them left out)."""
    calls: dict[Path, list[list[str | None]]] = {}
    functions: set[str] = set()
    for script in scripts:
        calls[script] = []
        walk(syntax_tree(script), calls[script], functions)
    used: dict[str, set[str]] = {}
    for script, argvs in calls.items():
        for argv in argvs:
            for name in commands_of(argv):
                if name in BASH_BUILTINS or name in functions or name.startswith(("/", ".", "-", "scripts/")):
                    continue
                used.setdefault(name, set()).add(str(script.relative_to(REPO)))
    return used


def python_commands(files: list[Path]) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            program = None
            if name in {"run", "Popen", "check_call", "check_output", "call"} and isinstance(
                first, ast.List | ast.Tuple
            ):
                program = first.elts[0] if first.elts else None
            elif name == "which":
                program = first
            elif name == "in_netns" and len(node.args) > 1:
                program = node.args[1]
            if isinstance(program, ast.Constant) and isinstance(program.value, str):
                used.setdefault(program.value, set()).add(str(path.relative_to(REPO)))
    return used


def makefile_commands() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    continued = False
    for line in (REPO / "Makefile").read_text().splitlines():
        starts_command, continued = line.startswith("\t") and not continued, line.endswith("\\")
        if starts_command:
            word = line.split()[0].lstrip("@-")  # make's echo and ignore-errors prefixes
            if not word.startswith(("$", "scripts/", "tests/")):  # the repository's own scripts
                used.setdefault(word, set()).add("Makefile")
    return used


def test_the_list_is_well_formed():
    entries = read_list()
    tools = [p.tool for p in entries]
    assert len(tools) == len(set(tools)), f"listed twice: {sorted({t for t in tools if tools.count(t) > 1})}"
    assert {p.needed_by for p in entries} <= GROUPS
    assert all(p.provider == PREINSTALLED or p.provider.replace("-", "").replace(".", "").isalnum() for p in entries)


def test_every_program_the_scripts_and_the_harness_run_is_listed():
    used: dict[str, set[str]] = {}
    for found in (shell_commands(SHELL_SCRIPTS), python_commands(PYTHON_FILES), makefile_commands()):
        for name, where in found.items():
            used.setdefault(name, set()).update(where)
    # The parsers must see the programs this list exists for (else they read nothing).
    assert {"containerd", "ctr", "podman", "redis-server", "mmdebstrap", "openssl", "nsenter", "sysctl"} <= set(used)
    # Programs of the venv (lint-imports, pytest...) come from pyproject.toml, not from the list.
    venv_bin = Path(sys.executable).parent
    unlisted = {
        name: sorted(where)
        for name, where in used.items()
        if name not in listed_tools() and not (venv_bin / name).exists()
    }
    assert not unlisted, f"run but not on {LIST_FILE.name}: {unlisted}"


def test_the_node_check_reads_the_list(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: every command is missing
    lines = missing_prerequisites()
    assert "containerd: not found (apt-get install containerd, or make prerequisites)" in lines
    node_tools = {p.tool for p in read_list() if p.needed_by in {"node", "cluster"} and not p.tool.startswith("/")}
    assert {line.split(":")[0] for line in lines} >= node_tools


@pytest.mark.parametrize("group", sorted(GROUPS - {OPTIONAL}))
def test_a_missing_tool_names_its_package(group, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    entries = [p for p in read_list() if p.needed_by == group and not p.tool.startswith("/")]
    lines = missing_lines({group})
    for p in entries:
        assert any(line.startswith(f"{p.tool}: not found") and p.how_to_get() in line for line in lines)
