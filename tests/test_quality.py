"""Code quality gates that run with the tests: ruff, mypy, the one-way imports, docker-compose."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eventrouter.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("eventrouter", "producers", "streams", "forwarders", "schemas")
# Who may import whom (STYLE.md): everyone imports schemas; streams and forwarders never import
# each other; nothing imports producers; only the eventrouter CLI wires everything.
ALLOWED = {
    "schemas": {"schemas"},
    "producers": {"producers", "schemas"},
    "streams": {"streams", "schemas"},
    "forwarders": {"forwarders", "schemas"},
    "eventrouter": set(PACKAGES),
}


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_ruff_is_clean() -> None:
    proc = subprocess.run([_bin("ruff"), "check", "."], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_is_clean() -> None:
    proc = subprocess.run([_bin("mypy")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_flow_one_way(package: str) -> None:
    bad = []
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top not in ALLOWED[package]:
                    bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert bad == []


def _imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project's modules `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found & modules


def test_no_module_imports_itself_back_through_others() -> None:
    """No circles: a module that another one builds on never imports it, not even inside a function."""
    files = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
             for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    graph = {name: _imports_of(path, set(files)) - {name} for name, path in files.items()}
    circles = []
    for start, imported in graph.items():
        seen, todo = set(), list(imported)
        while todo:
            name = todo.pop()
            if name == start:
                circles.append(start)
                break
            if name not in seen:
                seen.add(name)
                todo.extend(graph[name])
    assert circles == []


# The development tools (eventrouter/dev: the embedded broker, the vendor stand-ins, the native build) are
# imported by the commands that start them for a user (the CLI, the demo) and by tests and benchmarks only.
DEV_USERS = {"eventrouter/cli.py", "eventrouter/commands.py", "eventrouter/demo.py", "eventrouter/demo_delivery.py"}


def test_the_pipeline_never_imports_the_development_tools() -> None:
    bad = []
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            where = path.relative_to(REPO).as_posix()
            if where.startswith("eventrouter/dev/") or where in DEV_USERS:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
                bad += [f"{where} imports {name}" for name in names if name.startswith("eventrouter.dev")]
    assert bad == []


def test_docker_compose_parses_and_every_command_exists_in_the_cli() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    commands = {n: s["command"] for n, s in compose["services"].items() if "command" in s}
    assert {"gateway", "worker"} <= set(commands) and any(n.startswith("forwarder") for n in commands)
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    subcommands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, command in commands.items():
        assert command[0] == "eventrouter", name
        assert command[1] in subcommands, f"service {name}: `eventrouter {command[1]}` is not a CLI command"
    for name, service in compose["services"].items():
        if "build" in service:
            assert (REPO / service["build"] / "Dockerfile").exists(), name


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make run" in readme
