"""The package's layering (docs/ARCHITECTURE.md): no module imports a unit on a higher layer,
and units on one layer do not import each other. The only exception: a paradigm's
`__main__.py` is an entry point and imports `registry`."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxrl_reason"
LAYERS = [
    {"errors", "rng"},
    {"files", "named"},
    {"tokenizers", "parallel", "distributed", "plots"},
    {"cli", "rewards"},
    {"data"},
    {"models"},
    {"sampling"},
    {"training"},
    {"rollouts"},
    {"common"},
    {"sft", "self_improve", "star"},
    {"verifiers"},
    {"rl", "search"},
    {"rpt", "azr"},  # RPT runs the rl job as one of its stages; AZR uses its learner
    {"registry"},
    {"api", "evaluate", "sample", "export", "train_verifier"},
    {"__init__"},  # jaxrl_reason.load, which imports api when called
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """jaxrl_reason.rl.learner -> rl; jaxrl_reason.errors -> errors."""
    return module.split(".")[1] if "." in module else "__init__"


def imports(path: pathlib.Path) -> list[str]:
    """The jaxrl_reason modules a file imports (`from jaxrl_reason import x` names x)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "jaxrl_reason":
                out += [f"jaxrl_reason.{a.name}" for a in node.names]
            elif node.module.startswith("jaxrl_reason."):
                out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("jaxrl_reason.")]
    return out


def test_every_unit_has_a_layer():
    units = {p.stem if p.parent == PACKAGE else p.relative_to(PACKAGE).parts[0]
             for p in PACKAGE.rglob("*.py")}
    assert units - set(LAYER) == set(), "add the new module or package to LAYERS"


def test_no_import_runs_up_or_across_a_layer():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        source = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for module in imports(path):
            target = unit_of(module)
            if target == source:
                continue
            if path.name == "__main__.py" and target in ("registry", "cli"):
                continue  # entry points (docs/ARCHITECTURE.md)
            if LAYER[target] >= LAYER[source]:
                wrong.append(f"{rel} imports {module}")
    assert wrong == []


def test_the_check_catches_an_upward_import(tmp_path):
    """The walker sees both import forms, so a violation cannot hide behind one of them."""
    f = tmp_path / "x.py"
    f.write_text("from jaxrl_reason import rl\nimport jaxrl_reason.search.loop\n"
                 "from jaxrl_reason.star.loop import star\n")
    assert imports(f) == ["jaxrl_reason.rl", "jaxrl_reason.search.loop",
                          "jaxrl_reason.star.loop"]
