"""The package's shape: DESIGN.md maps every module, no module reaches into another's private
names, and the subpackages' `__init__.py` files import nothing heavy (the workflow's planning
imports from them)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "ciinv"


def modules() -> list[Path]:
    """Every module with code: a package's `__init__.py` counts only if it defines functions."""
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
                  or any(isinstance(n, ast.FunctionDef) for n in ast.parse(p.read_text()).body))


def test_design_md_maps_every_module_and_only_existing_ones():
    design = (REPO / "DESIGN.md").read_text()
    layout = design[design.index("## Layout"):design.index("\n## ", design.index("## Layout") + 1)]
    named = set(re.findall(r"`(ciinv/[\w/]+\.py)`", layout))
    actual = {str(p.relative_to(REPO)) for p in modules()}
    assert actual - named == set(), "modules missing from DESIGN.md's layout"
    assert named - actual == set(), "DESIGN.md's layout names modules that do not exist"


def private_uses(path: Path) -> list[str]:
    """`from x import _y` and `x._y` where x is an imported ciinv module."""
    tree = ast.parse(path.read_text())
    found, imported_modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ciinv"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"from {node.module} import {alias.name}")
                else:
                    imported_modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ciinv"):
                    imported_modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in imported_modules):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_no_module_reaches_into_another_modules_private_names():
    scripts = sorted((REPO / "benchmarks").glob("*.py"))
    offences = {str(p.relative_to(REPO)): private_uses(p) for p in modules() + scripts}
    assert {path: uses for path, uses in offences.items() if uses} == {}


def test_subpackage_inits_import_nothing():
    for init in PACKAGE.rglob("__init__.py"):
        if init.parent == PACKAGE / "models":
            continue  # the loaders' front door: imports only inside its functions (test_dry_run)
        tree = ast.parse(init.read_text())
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert imports == [], f"{init.relative_to(REPO)} imports at package load"
