"""The check of the built documentation finds what it is meant to find."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / ".ci" / "check_docs.py"
spec = importlib.util.spec_from_file_location("check_docs", SCRIPT)
check_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_docs)

LOCAL_HEAD = '<script src="_static/doctools.js"></script>'


def _page(ids, head=LOCAL_HEAD):
    body = "".join(f'<dt id="{i}">x</dt>' for i in ids)
    return f"<html><head>{head}</head><body>{body}</body></html>"


@pytest.fixture
def site(tmp_path):
    """A built tree that passes: every page and method, MathJax bundled."""
    (tmp_path / "generated").mkdir()
    expected = {f"sknw.{n}": m for n, m in check_docs.ESTIMATOR_METHODS.items()}
    expected.update(check_docs.OTHER_PAGES)
    for name, methods in expected.items():
        ids = [name] + [f"{name}.{m}" for m in methods]
        (tmp_path / "generated" / f"{name}.html").write_text(_page(ids))
    (tmp_path / "user_guide.html").write_text(_page([]) + "attention_weights")
    (tmp_path / "_static" / "mathjax").mkdir(parents=True)
    (tmp_path / "_static" / "mathjax" / "tex-chtml.js").write_text("")
    return tmp_path


def test_complete_offline_site_passes(site):
    assert check_docs.check(site) == []
    assert check_docs.main(["check_docs.py", str(site)]) == 0


@pytest.mark.parametrize(
    "head",
    [
        '<script src="https://cdn.example.org/mathjax/tex-chtml.js"></script>',
        '<script defer src="//cdn.example.org/x.js"></script>',
        '<link rel="stylesheet" href="http://cdn.example.org/x.css">',
    ],
)
def test_a_page_loading_from_the_network_fails(site, head):
    (site / "index.html").write_text(_page([], head=head))
    (problem,) = check_docs.check(site)
    assert problem.startswith("index.html loads")
    assert check_docs.main(["check_docs.py", str(site)]) == 1


def test_an_estimator_page_without_inherited_methods_fails(site):
    page = site / "generated" / "sknw.NadarayaWatsonRegressorCV.html"
    name = "sknw.NadarayaWatsonRegressorCV"
    page.write_text(_page([name, f"{name}.fit", f"{name}.predict"]))
    problems = check_docs.check(site)
    assert any("does not document score" in p for p in problems)
    assert any("does not document attention_weights" in p for p in problems)


def test_missing_pages_and_mathjax_fail(site):
    (site / "generated" / "sknw.dask.predict_blockwise.html").unlink()
    (site / "_static" / "mathjax" / "tex-chtml.js").unlink()
    (site / "user_guide.html").write_text(_page([]))
    problems = check_docs.check(site)
    assert "no API page for sknw.dask.predict_blockwise" in problems
    assert "MathJax is not bundled in _static/mathjax" in problems
    assert "the user guide does not mention attention_weights" in problems
