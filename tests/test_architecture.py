"""The layer rules of ARCHITECTURE.md, the light core, and packaging, checked on the source."""

import ast
import subprocess
import sys
import tomllib

import pytest

LAYERS = ("node", "protocols", "learning", "sim")
# what each layer may import from the others
ALLOWED = {
    "learning": set(),
    "protocols": set(),
    "node": {"protocols", "learning"},
    "sim": {"node", "protocols", "learning"},
}
HEAVY = ("torch", "flwr", "peft", "torch_geometric", "transformers", "onnxruntime", "matplotlib", "libp2p")


def imported_layers(path):
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "edgeswarm" and len(parts) > 1 and parts[1] in LAYERS:
                layers.add(parts[1])
    return layers


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_downwards(repo, layer):
    for path in sorted((repo / layer).rglob("*.py")):
        rel = path.relative_to(repo).as_posix()
        illegal = imported_layers(path) - ALLOWED[layer] - {layer}
        assert not illegal, f"{rel} imports {sorted(illegal)}"


def test_light_core_imports_no_heavy_dependency(repo):
    code = (
        "import sys\n"
        "import edgeswarm.node.node, edgeswarm.node.cli, edgeswarm.node.store, edgeswarm.sim.runner\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo)
    assert out.stdout.strip() == "[]"


def test_the_daemon_and_its_cli_load_nothing_of_the_simulator(repo):
    """``edgeswarm sim`` is found by name when it is asked for (node/cli.py's _SimCommands)."""
    code = "import sys, edgeswarm.node.cli, edgeswarm.node.daemon\nprint([m for m in sys.modules if 'sim' in m.split('.')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo)
    assert out.stdout.strip() == "[]"


def _module_name(repo, path):
    parts = list(path.relative_to(repo).with_suffix("").parts)
    return ".".join(["edgeswarm", *parts[:-1]] + ([] if parts[-1] == "__init__" else [parts[-1]]))


def _module_level_imports(repo, path, known):
    """The edgeswarm modules ``path`` imports when it is imported (TYPE_CHECKING blocks too, not
    the lazy imports inside functions)."""
    package = _module_name(repo, path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(repo, path)
    statements, found = list(ast.parse(path.read_text()).body), set()
    while statements:
        node = statements.pop()
        if isinstance(node, ast.If | ast.Try):
            statements += node.body + node.orelse + getattr(node, "handlers", []) + getattr(node, "finalbody", [])
        elif isinstance(node, ast.ExceptHandler):
            statements += node.body
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {name for name in found if name in known}


def test_no_module_imports_itself_through_others(repo):
    """No import cycles (sim/ had one of 10 files through observe.py)."""
    paths = {_module_name(repo, p): p for layer in LAYERS for p in (repo / layer).rglob("*.py")}
    graph = {name: _module_level_imports(repo, path, paths.keys()) - {name} for name, path in paths.items()}
    from edgeswarm.sim.workloads import MODULES  # the registry imports its workloads by name

    graph["edgeswarm.sim.workloads"] |= {f"edgeswarm.sim.{module}" for module in MODULES}
    for start in graph:
        seen, stack = set(), [(start, [start])]
        while stack:
            name, trail = stack.pop()
            for nxt in graph[name]:
                if nxt == start:
                    raise AssertionError("import cycle: " + " -> ".join([*trail, nxt]))
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))


def test_no_two_modules_share_a_file_name(repo):
    """A name says which module it is; each protocol's ``messages.py`` is the one convention."""
    conventions = {"__init__.py", "__main__.py", "messages.py"}
    seen: dict[str, str] = {}
    for layer in LAYERS:
        for path in sorted((repo / layer).rglob("*.py")):
            rel = path.relative_to(repo).as_posix()
            assert path.name in conventions or path.name not in seen, f"{rel} and {seen.get(path.name)}"
            seen[path.name] = rel


def test_every_package_is_in_the_wheel(repo):
    config = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        "edgeswarm." + init.parent.relative_to(repo).as_posix().replace("/", ".")
        for layer in LAYERS
        for init in (repo / layer).rglob("__init__.py")
    }
    assert found | {"edgeswarm"} == listed  # edgeswarm itself: sdk/, the Python API
    assert all(config["package-dir"][f"edgeswarm.{layer}"] == layer for layer in LAYERS)
    assert config["package-dir"]["edgeswarm"] == "sdk" and [p.name for p in (repo / "sdk").iterdir()] == ["__init__.py"]


def test_the_python_api_gathers_from_the_node_layer_only(repo):
    """``edgeswarm.Client`` and friends are re-exported; the code lives in its layer."""
    assert imported_layers(repo / "sdk" / "__init__.py") == {"node"}


def _imports(tree):
    """Top-level names of the modules ``tree`` imports (absolute imports, lazy ones too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_every_third_party_import_is_declared(repo):
    """An import that works only because another package happens to pull its distribution in
    breaks when that package changes its own requirements (as typer 0.29 did with click).
    What the core must hold to start is proved by running the `core` tests in a core-only venv."""
    import re
    from importlib.metadata import packages_distributions

    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    declared = {re.split(r"[ <>=!~;\[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}
    owners = packages_distributions()
    undeclared = set()
    for layer in (*LAYERS, "sdk"):
        for path in sorted((repo / layer).rglob("*.py")):
            for module in set(_imports(ast.parse(path.read_text()))):
                if module in sys.stdlib_module_names or module in ("edgeswarm", "__future__"):
                    continue
                if not {d.lower().replace("_", "-") for d in owners.get(module, [module])} & declared:
                    undeclared.add(f"{path.relative_to(repo)}: {module}")
    assert not undeclared, "imported but not declared in pyproject.toml: " + ", ".join(sorted(undeclared))
