"""Check the built HTML documentation.

Usage: ``python .ci/check_docs.py docs/_build/html``. Fails (exit status 1)
when an estimator's page does not document every public method, inherited ones
included, when the API reference lacks a public name, or when any page loads a
script, a stylesheet or a font from the network: the pages must work offline.
"""

import sys
from html.parser import HTMLParser
from pathlib import Path

ESTIMATOR_METHODS = {
    "NadarayaWatsonRegressor": ["fit", "predict", "score", "attention_weights"],
    "NadarayaWatsonRegressorCV": ["fit", "predict", "score", "attention_weights"],
    "NadarayaWatsonClassifier": [
        "fit",
        "predict",
        "predict_proba",
        "predict_log_proba",
        "score",
        "attention_weights",
    ],
    "NadarayaWatsonClassifierCV": [
        "fit",
        "predict",
        "predict_proba",
        "predict_log_proba",
        "score",
        "attention_weights",
    ],
}
OTHER_PAGES = {
    "sknw.AttentionWeightsDisplay": ["from_estimator", "plot"],
    "sknw.FittedCurveDisplay": ["from_estimator", "plot"],
    "sknw.LossCurveDisplay": ["from_estimator", "plot"],
    "sknw.dask.predict_partitioned": [],
    "sknw.dask.predict_blockwise": [],
}


class _Page(HTMLParser):
    """The ids and the external resources of one HTML page."""

    def __init__(self):
        super().__init__()
        self.ids = set()
        self.remote = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        url = None
        if tag in ("script", "img", "iframe"):
            url = attrs.get("src")
        elif tag == "link" and attrs.get("rel") in ("stylesheet", "preload"):
            url = attrs.get("href")
        if url and _is_remote(url):
            self.remote.append(f"<{tag}> {url}")


def _is_remote(url):
    return url.startswith(("http://", "https://", "//"))


def parse(path):
    page = _Page()
    page.feed(Path(path).read_text(encoding="utf-8"))
    return page


def check(root):
    """Return the list of problems found in the HTML tree under ``root``."""
    root = Path(root)
    problems = []
    pages = sorted(root.rglob("*.html"))
    if not pages:
        return [f"no HTML page under {root}"]
    for path in pages:
        for what in parse(path).remote:
            problems.append(f"{path.relative_to(root)} loads {what} from the network")
    expected = {f"sknw.{name}": methods for name, methods in ESTIMATOR_METHODS.items()}
    expected.update(OTHER_PAGES)
    for name, methods in expected.items():
        path = root / "generated" / f"{name}.html"
        if not path.exists():
            problems.append(f"no API page for {name}")
            continue
        ids = parse(path).ids
        if name not in ids:
            problems.append(f"{path.name} does not document {name}")
        for method in methods:
            if f"{name}.{method}" not in ids:
                problems.append(f"{path.name} does not document {method}")
    guide = root / "user_guide.html"
    if not guide.exists() or "attention_weights" not in guide.read_text("utf-8"):
        problems.append("the user guide does not mention attention_weights")
    mathjax = root / "_static" / "mathjax" / "tex-chtml.js"
    if not mathjax.exists():
        problems.append("MathJax is not bundled in _static/mathjax")
    return problems


def main(argv):
    root = argv[1] if len(argv) > 1 else "docs/_build/html"
    problems = check(root)
    for problem in problems:
        print(problem)
    print(f"checked {root}: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
