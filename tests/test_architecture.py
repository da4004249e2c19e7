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
COMPOSITION_ROOTS = {"node/cli.py"}  # gathers every command group, sim's included
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
        if rel in COMPOSITION_ROOTS:
            continue
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


def test_every_package_is_in_the_wheel(repo):
    config = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        "edgeswarm." + init.parent.relative_to(repo).as_posix().replace("/", ".")
        for layer in LAYERS
        for init in (repo / layer).rglob("__init__.py")
    }
    assert found == listed
    assert all(config["package-dir"][f"edgeswarm.{layer}"] == layer for layer in LAYERS)


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
    for layer in LAYERS:
        for path in sorted((repo / layer).rglob("*.py")):
            for module in set(_imports(ast.parse(path.read_text()))):
                if module in sys.stdlib_module_names or module in ("edgeswarm", "__future__"):
                    continue
                if not {d.lower().replace("_", "-") for d in owners.get(module, [module])} & declared:
                    undeclared.add(f"{path.relative_to(repo)}: {module}")
    assert not undeclared, "imported but not declared in pyproject.toml: " + ", ".join(sorted(undeclared))
