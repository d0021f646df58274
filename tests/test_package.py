"""Package hygiene: the version, the layering of docs/ARCHITECTURE.md, and what imports pull in."""

import ast
import pathlib
import subprocess
import sys

import pytest

import sslsr

PACKAGE = pathlib.Path(sslsr.__file__).parent

# docs/ARCHITECTURE.md: a module may import its own layer and the layers below, never above.
LAYERS = {
    "sslsr.edges": 0,
    "sslsr.losses": 0,
    "sslsr.models": 0,
    "sslsr.data": 1,
    "sslsr.weights": 1,
    "sslsr.jax_private": 0,
    "sslsr.cli": 0,
    "sslsr.errors": 0,
    "sslsr.files": 0,
    "sslsr.inference": 2,
    "sslsr.metrics": 2,
    "sslsr.convert": 2,
    "sslsr.train": 3,
    "sslsr.evaluate": 3,
    "sslsr.upscale": 4,
    "sslsr.export": 4,
    "sslsr.interp": 4,
    "sslsr.meta": 2,
    "sslsr.diffusion": 2,
    "sslsr.faces": 2,
    "sslsr.adapt": 4,
}


def _layer(module: str) -> int | None:
    for prefix, layer in sorted(LAYERS.items(), key=lambda kv: -len(kv[0])):
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sslsr_imports(path: pathlib.Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("sslsr")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sslsr"):
            # `from sslsr import x` imports the submodule sslsr.x when x is one.
            out |= {f"{node.module}.{a.name}" if node.module == "sslsr" else node.module for a in node.names}
    return out


def test_version_is_declared():
    assert sslsr.__version__.count(".") == 2


def test_every_module_has_a_layer():
    unplaced = [_module_name(p) for p in PACKAGE.rglob("*.py")
                if _module_name(p) != "sslsr" and _layer(_module_name(p)) is None]
    assert not unplaced, f"add these modules to the layering (docs/ARCHITECTURE.md and LAYERS): {unplaced}"


def test_no_module_imports_a_higher_layer():
    back_edges = []
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        own = _layer(name)
        if own is None:
            continue
        for imported in _sslsr_imports(path):
            layer = _layer(imported)
            if layer is not None and layer > own:
                back_edges.append(f"{name} (layer {own}) imports {imported} (layer {layer})")
    assert not back_edges, "\n".join(back_edges)


@pytest.mark.parametrize(
    "module, forbidden",
    [
        ("sslsr.losses", ("torch", "grain", "sslsr.data", "sslsr.train")),
        ("sslsr.inference", ("sslsr.train", "sslsr.evaluate", "torch")),
        ("sslsr.data.pipeline", ("torch", "sslsr.losses", "sslsr.train")),
        ("sslsr.weights", ("torch", "sslsr.train")),
        ("sslsr.faces.detect", ("torch", "facenet_pytorch", "sslsr.train")),
    ],
)
def test_imports_stay_light(module, forbidden):
    code = (f"import sys, {module}; "
            f"print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in {{'torch', 'grain', 'jax'}} "
            f"or m.startswith('sslsr.'))))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    pulled = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert not pulled, f"importing {module} pulls in {sorted(set(p.split('.')[0] if not p.startswith('sslsr') else p for p in pulled))}"
