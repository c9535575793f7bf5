"""One registry idiom: every member of every spec union has exactly one runner
implementation, and every implementation belongs to a member (runners/registry.py)."""

import pytest

from runners import registry


def test_every_spec_member_has_exactly_one_implementation_and_back():
    impls = registry.registered()
    members = registry.members()
    assert set(members) == {"regime", "path kind", "dataset", "arch", "distribution", "optimizer", "lr schedule"}
    every = [m for family in members.values() for m in family]
    assert len(every) == len(set(every))  # a member belongs to one family
    for family, ms in members.items():
        assert ms, family
        for m in ms:
            assert m in impls, f"{family} {registry._label(m)} has no runner implementation"
    orphans = [registry._label(k) for k in impls if k not in set(every)]
    assert not orphans, f"implementations without a spec member: {orphans}"
    # exactly one: a second registration of a member is refused at import
    spec_class, name = members["optimizer"][0]
    with pytest.raises(TypeError, match="two implementations"):
        registry.implements(spec_class, name)(lambda *a: None)
    assert registry.lookup(spec_class, name) is impls[(spec_class, name)]


def test_typed_jobs_find_the_implementation_of_their_spec_class():
    """A resolved job regime (studyspec.spec.jobs) subclasses its spec class: the lookup
    walks the class hierarchy."""
    from runners import paths, regimes
    from studyspec.spec import jobs, paths as P, regimes as R

    fm = jobs.job_class(R.FixedMask).model_validate(
        {"regime": "fixed_mask", "mask": {"job": "abc", "artifact": "final"}, "sparsity": 0.9})
    assert isinstance(fm, R.FixedMask) and fm.mask.job == "abc"
    assert registry.lookup(fm) is regimes.FixedMask
    pc = jobs.job_class(P.Polychain).model_validate(
        {"kind": "polychain", "from": {"job": "a", "artifact": "final"}, "to": {"job": "b", "artifact": "final"},
         "bends": 3})
    assert paths.curve_of(pc).n_points == 5
    with pytest.raises(ValueError, match="no runner implementation"):
        registry.lookup(object())


def test_executor_names_agree():
    """An executor is named in three places (docs/extending.md, "A new executor"): the spec's
    launch.executor, the command line's --executor choices and studyspec.executors.NAMES;
    create() gives each name its executor."""
    import typing

    from studyspec import cli, executors
    from studyspec.load import loads
    from studyspec.spec.study import Launch

    assert typing.get_args(Launch.model_fields["executor"].annotation) == executors.NAMES
    assert tuple(e.value for e in cli.Executor) == executors.NAMES
    loaded = loads("study: s\ndata: {dataset: digits}\nmodel: {arch: mlp}\ntrain: {steps: 10}\n"
                   "runs: {dense: {regime: dense}}\n", data_check=False)
    for name in executors.NAMES:
        ex = executors.create(name, loaded)
        assert isinstance(ex, executors.Executor) and ex.name == name
