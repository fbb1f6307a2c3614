"""Every example script runs."""

import ast
import runpy
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))

# Optional packages an example may import, and the ones each needs: sknw.dask
# is the package's dask extra.
OPTIONAL = {
    "dask": ("dask",),
    "distributed": ("distributed",),
    "dask_ml": ("dask_ml",),
    "sknw.dask": ("dask", "distributed"),
}


def optional_modules(script):
    """The optional packages ``script`` imports, in the order of OPTIONAL."""
    imported = set()
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    needed = []
    for name, modules in OPTIONAL.items():
        if any(module == name or module.startswith(name + ".") for module in imported):
            needed += [module for module in modules if module not in needed]
    return needed


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_runs(script, capsys):
    for module in optional_modules(script):
        pytest.importorskip(module, reason=f"{script.name} needs {module}")
    runpy.run_path(str(script), run_name="__main__")
    plt.close("all")
    assert capsys.readouterr().out.strip(), "every example prints what it found"


def test_optional_modules_are_found():
    dask_example = EXAMPLES[0].with_name("plot_dask_partitioned.py")
    assert optional_modules(dask_example) == ["dask", "distributed", "dask_ml"]
    assert optional_modules(EXAMPLES[0].with_name("quickstart.py")) == []
