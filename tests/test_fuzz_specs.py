"""Property-based fuzzing (hypothesis) of the YAML loader and the spec models: any input is
either loaded or a located UserError, and a spec that loads also plans."""

from __future__ import annotations

import copy
import math

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import ROOT
from studyspec import yamlpos
from studyspec.errors import UserError
from studyspec.load import loads
from studyspec.plan import build

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
QUICKSTART = yaml.safe_load((ROOT / "specs" / "quickstart.yaml").read_text())


def _located(e: UserError) -> bool:
    p = e.problems[0]
    return p.line is not None and p.col is not None


@FUZZ
@given(st.text(max_size=300))
def test_any_text_loads_or_is_a_located_error(text):
    try:
        yamlpos.loads(text, "f.yaml")
    except UserError as e:
        assert e.problems and (_located(e) or "empty" in str(e)), str(e)


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_are_a_located_error(raw):
    try:
        yamlpos.loads(yamlpos.decode(raw, "f.yaml"), "f.yaml")
    except UserError as e:
        assert e.problems and (_located(e) or "empty" in str(e)), str(e)


text = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\x85\ufeff"),
               max_size=20)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), text)
keys = st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=10)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                         max_leaves=30)


@FUZZ
@given(st.dictionaries(keys, documents, min_size=1, max_size=5))
def test_plain_yaml_round_trips_with_a_position_for_every_value(data):
    text = yaml.safe_dump(data, allow_unicode=True)
    got = yamlpos.loads(text, "f.yaml")
    assert got.data == data or _has_date_like_or_colon_text(data)

    def walk(node, path):
        assert path in got.positions
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + (i,))
    walk(got.data, ())


def _has_date_like_or_colon_text(node) -> bool:
    """safe_dump writes some strings plain that YAML 1.1 reads otherwise; the loader keeps text."""
    if isinstance(node, dict):
        return any(_has_date_like_or_colon_text(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_date_like_or_colon_text(v) for v in node)
    return isinstance(node, float) and (math.isinf(node) or node != node)


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, path + (i,))


PATHS = [p for p in _paths(QUICKSTART) if p]
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(keys, scalars, max_size=2))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=3))
def test_a_mutated_spec_loads_and_plans_or_is_a_located_error(edits):
    data = copy.deepcopy(QUICKSTART)
    for path, value in edits:
        node = data
        for p in path[:-1]:
            if not isinstance(node, (dict, list)) or (isinstance(node, list) and not (0 <= p < len(node))) \
                    or (isinstance(node, dict) and p not in node):
                break
            node = node[p]
        else:
            if isinstance(node, dict) or (isinstance(node, list) and 0 <= path[-1] < len(node)):
                node[path[-1]] = value
    try:
        spec = loads(yaml.safe_dump(data, allow_unicode=True), "f.yaml", data_check=False)
    except UserError as e:
        assert _located(e), str(e)
        return
    plan = build(spec.study)  # a spec that loads is a spec that plans
    assert plan.jobs
