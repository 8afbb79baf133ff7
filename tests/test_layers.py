"""Layers point one way: dags → etl → masking → catalog (docs/architecture.md).

Read with ``ast`` so a deferred import inside a function counts as much as one at the top.
The simulator, bench and tests sit on top; production code never imports them, with one
documented exception: ``lake simulate`` imports the simulator lazily (an optional extra).
"""

from __future__ import annotations

import ast
from pathlib import Path

from etl.settings import REPO_ROOT

LAYERS = {"catalog": 0, "masking": 1, "etl": 2, "dags": 3}
ON_TOP = {"simulator", "bench", "tests"}
ALLOWED = {("etl/cli.py", "simulator")}  # `lake simulate`, deferred, optional extra


def imported_packages(path: Path) -> set[str]:
    """Top-level package names a module imports, anywhere in its body."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def layer_violations(root: Path) -> list[str]:
    """``file imports package`` for every import against the layer order under ``root``."""
    found = []
    for package, rank in LAYERS.items():
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for name in sorted(imported_packages(path)):
                above = LAYERS.get(name, -1) > rank or name in ON_TOP
                if above and (relative, name) not in ALLOWED:
                    found.append(f"{relative} imports {name}")
    return found


def test_production_layers_point_one_way() -> None:
    assert layer_violations(REPO_ROOT) == []


def test_a_wrong_import_is_caught(tmp_path: Path) -> None:
    for package in LAYERS:
        (tmp_path / package).mkdir()
    (tmp_path / "catalog" / "lookup.py").write_text("def f():\n    from etl.zones import Lake\n")
    (tmp_path / "masking" / "ops.py").write_text("import catalog.errors\nimport dags.x\n")
    (tmp_path / "etl" / "step.py").write_text("from simulator import build_departments\n")
    (tmp_path / "etl" / "fine.py").write_text("from masking import ops\nfrom catalog import x\n")
    assert layer_violations(tmp_path) == [
        "catalog/lookup.py imports etl",
        "masking/ops.py imports dags",
        "etl/step.py imports simulator",
    ]


def test_the_simulator_is_an_optional_extra() -> None:
    """Faker and XlsxWriter are installed only with the simulator extra."""
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    assert "faker" not in core and "xlsxwriter" not in core
    assert any("faker" in d.lower() for d in project["optional-dependencies"]["simulator"])
