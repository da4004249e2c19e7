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


def _imports(tree, *, top_level_only: bool):
    """Top-level module names imported in ``tree`` (absolute imports only)."""
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def _declared(repo):
    """Normalised distribution names: (core dependencies, every extra's too)."""
    import re

    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]

    def names(requirements):
        return {re.split(r"[ <>=!~;\[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}

    core = names(project["dependencies"])
    return core, core | set().union(*(names(r) for r in project["optional-dependencies"].values()))


def test_every_third_party_import_is_declared_and_the_core_imports_only_core_dependencies(repo):
    """`pip install .` must give the daemon, CLI and simulator all they import at start-up."""
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    core, everything = _declared(repo)
    undeclared, not_core = set(), set()
    for layer in LAYERS:
        for path in sorted((repo / layer).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for top_level_only in (True, False):
                for module in set(_imports(tree, top_level_only=top_level_only)):
                    if module in sys.stdlib_module_names or module == "edgeswarm" or module == "__future__":
                        continue
                    dists = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
                    if not dists & everything:
                        undeclared.add(f"{path.relative_to(repo)}: {module}")
                    elif top_level_only and layer != "learning" and not dists & core:
                        not_core.add(f"{path.relative_to(repo)}: {module}")
    assert not undeclared, "imported but not declared in pyproject.toml: " + ", ".join(sorted(undeclared))
    assert not not_core, "the core imports these at module level, but they are extras: " + ", ".join(sorted(not_core))
