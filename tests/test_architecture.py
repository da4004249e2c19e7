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
