"""Every example script runs."""

import ast
import runpy
import sys
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
    unlabelled = [
        (number, ax.get_title())
        for number in plt.get_fignums()
        for ax in plt.figure(number).axes
        if ax.get_label() != "<colorbar>"
        and not (ax.get_xlabel() and _ylabel(ax) and _title(ax))
    ]
    plt.close("all")
    assert capsys.readouterr().out.strip(), "every example prints what it found"
    assert not unlabelled, "every plot has axis labels and a title"


def _ylabel(ax):
    """The axes' y label, or that of an axes sharing its y axis."""
    return any(other.get_ylabel() for other in ax.get_shared_y_axes().get_siblings(ax))


def _title(ax):
    suptitle = ax.figure.get_suptitle() if hasattr(ax.figure, "get_suptitle") else ""
    return ax.get_title() or suptitle


def _last_statement(script):
    body = ast.parse(script.read_text(encoding="utf-8")).body
    return ast.unparse(body[-1])


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_with_figures_ends_with_show(script):
    text = script.read_text(encoding="utf-8")
    if "matplotlib" not in text:
        pytest.skip(f"{script.name} draws no figure")
    assert _last_statement(script) == "plt.show()"


def test_gallery_opens_with_the_quickstart_then_the_chapter():
    sys.path.insert(0, str(Path(__file__).parents[1] / "docs"))
    try:
        from _gallery_order import GalleryOrder
    finally:
        sys.path.pop(0)
    names = sorted((path.name for path in EXAMPLES), key=GalleryOrder("examples"))
    chapter = [name for name in names if name.startswith("plot_d2l_")]
    assert names[0] == "quickstart.py"
    assert names[1 : 1 + len(chapter)] == chapter
    assert len(chapter) >= 7
    numbers = [int(name.split("_")[2]) for name in chapter]
    assert numbers == list(range(1, len(chapter) + 1))


def test_optional_modules_are_found():
    dask_example = EXAMPLES[0].with_name("plot_dask_partitioned.py")
    assert optional_modules(dask_example) == ["dask", "distributed", "dask_ml"]
    assert optional_modules(EXAMPLES[0].with_name("quickstart.py")) == []
