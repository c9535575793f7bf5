"""Docs that match the code: the spec reference is generated, the README's commands are CI's."""

from conftest import ROOT
from studyspec.specdoc import markdown


def test_spec_reference_is_up_to_date():
    doc = ROOT / "docs" / "spec.md"
    assert doc.read_text() == markdown(), "regenerate it: studyspec schema --markdown > docs/spec.md"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' -c constraints.txt"
    test = ".venv/bin/python -m pytest -q -n 2"
    assert f"{install} && {test}\n" in readme
    # .ci/run runs the two halves apart (the install beside apt): the same commands, in order
    assert f"({install})" in ci and ci.rstrip().endswith(test) and ci.index(install) < ci.index(test)
    assert "python3 -m venv .venv && .venv/bin/pip install -e . -c constraints.txt && .venv/bin/studyspec run specs/quickstart.yaml" in readme

