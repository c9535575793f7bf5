"""The typed job contract between the planner and the runners (torch-free).

A job is one runner call. The planner builds a ``TrainJob`` or a ``PathJob`` per job;
``job.json``'s ``config`` is its dump (``model_dump(mode="json", by_alias=True)``); the
runners validate ``config`` back into the same class (``parse_job``) and pass the typed
object down. Every default lives once, on the spec model the job's sections are:

- ``data``, ``model``, ``train``: the study's sections at the job's sweep point, as
  specified (``studyspec.spec.data``, ``.model``, ``.train``);
- ``regime`` (train jobs): the run's regime class with its references resolved: each
  reference field holds an ``ArtifactRef`` (``{job, artifact}``) instead of
  ``RUN.ARTIFACT``, plus ``sparsity``, the study's sparsity at the point, set exactly when
  the regime uses it (``uses_sparsity``); the run-level settings are moved where the
  runner reads them: ``seed_offset`` added to ``seed``, ``steps`` and ``lr`` into ``train``;
- ``path`` (path jobs): the path class with ``from``/``to`` resolved the same way.

Resolved classes subclass the spec classes (``FixedMaskJob`` is a ``FixedMask``), so the
class variables (``has_mask``, ``uses_sparsity``), validators and the runners' registry
(keyed by spec class, see ``runners/registry.py``) work on them unchanged. They are built
from the spec unions, so a new regime or path kind needs no edit here.

The job id is the hash of ``key(job)``: the same dump without defaults and without the
fields that say where rather than what (``unhashed``, e.g. ``data.root``), so a new field
with its default leaves every id unchanged.
"""

from __future__ import annotations

import typing
from typing import Annotated, Literal, Optional, Union

from pydantic import Field, TypeAdapter, field_validator, model_serializer

from .base import ARTIFACT, Ref, Strict
from .paths import AnyPath
from .regimes import AnyRegime
from .data import Data
from .model import Model
from .train import Train


class ArtifactRef(Strict):
    """An artifact of another job: its id and the artifact (init, final, mask, step[N])."""

    job: str = Field(description="the job id of the run that made the artifact")
    artifact: str = Field(description="init, final, mask or step[N]")

    @field_validator("artifact")
    @classmethod
    def _known(cls, value: str) -> str:
        if not ARTIFACT.match(value):
            raise ValueError(f"unknown artifact {value!r}; known: init, final, mask, step[N]")
        return value

    @property
    def step(self) -> int | None:
        """N of ``step[N]``, else None."""
        m = ARTIFACT.match(self.artifact)
        return int(m.group(2)) if m.group(2) is not None else None


def _members(union) -> tuple[type, ...]:
    """The classes of a discriminated union ``Annotated[Union[...], Field(...)]``."""
    return typing.get_args(typing.get_args(union)[0])


def _resolved_annotation(annotation):
    """The annotation of a reference field with every ``Ref`` (RUN.ARTIFACT) replaced by
    ``ArtifactRef``; endpoints given at another sweep point (``Endpoint``) resolve the same."""
    from .paths import Endpoint

    if annotation == Ref:
        return ArtifactRef
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Union and args:
        alts = tuple(dict.fromkeys(ArtifactRef if a == Ref or a is Endpoint else a for a in args))
        return alts[0] if len(alts) == 1 else Union[alts]  # type: ignore[return-value]
    return annotation


class RegimeJob(Strict):
    """Mixed into every resolved regime: the study's sparsity, when the regime uses it."""

    sparsity: Optional[float] = Field(None, description="the study's sparsity at this point (regimes using it)")
    # run-level settings the job carries elsewhere: seed_offset is added to the job's seed,
    # steps and lr are the job's train.steps and train.optimizer.lr
    seed_offset: int = Field(0, exclude=True)
    steps: Optional[int] = Field(None, exclude=True)
    lr: Optional[float] = Field(None, exclude=True)

    @model_serializer(mode="wrap")
    def _sparsity_when_set(self, handler):
        out = handler(self)
        if self.sparsity is None:
            out.pop("sparsity", None)
        return out


class PathJobBase(Strict):
    """Mixed into every resolved path kind."""


def _resolved(cls: type, mixin: type) -> type:
    """``cls`` (a spec regime or path class) with its reference fields resolved."""
    from pydantic import create_model
    from pydantic.fields import FieldInfo

    fields = {}
    for name in cls.ref_fields:
        info = cls.model_fields[name]
        new = FieldInfo.merge_field_infos(info, annotation=_resolved_annotation(info.annotation))
        fields[name] = (new.annotation, new)
    job_cls = create_model(f"{cls.__name__}Job", __base__=(mixin, cls), __module__=__name__, **fields)
    job_cls.spec_class = cls  # the spec class it resolves (the runners' registry key)
    return job_cls


def _resolved_union(union, mixin: type):
    members = tuple(_resolved(c, mixin) for c in _members(union))
    discriminator = typing.get_args(union)[1].discriminator
    return Annotated[Union[members], Field(discriminator=discriminator)], members


RegimeJobs, REGIME_JOBS = _resolved_union(AnyRegime, RegimeJob)
PathJobs, PATH_JOBS = _resolved_union(AnyPath, PathJobBase)
_BY_SPEC = {c.spec_class: c for c in REGIME_JOBS + PATH_JOBS}
_CACHE: dict[type, type] = dict(_BY_SPEC)  # every job class ever made, so a re-added regime keeps its class


def job_class(spec_class: type) -> type:
    """The resolved job class of a spec regime or path class."""
    return _BY_SPEC[spec_class]


class JobBase(Strict):
    seed: int = Field(description="the seed of everything random in the job (init, data order, masks)")
    data: Data
    model: Model


class TrainJob(JobBase):
    """Train one model under one regime at one sweep point."""

    kind: Literal["train"] = Field(description="job kind")
    train: Train
    regime: RegimeJobs


class PathJob(JobBase):
    """Evaluate (and for curves, train) one path between two trained runs' artifacts."""

    kind: Literal["path"] = Field(description="job kind")
    path: PathJobs


AnyJob = Annotated[Union[TrainJob, PathJob], Field(discriminator="kind")]
_JOB = TypeAdapter(AnyJob)


def set_regimes(members: tuple[type, ...]) -> None:
    """Make ``members`` the regimes of the spec: the study's ``runs`` and the train job's
    ``regime`` accept exactly these classes. For a regime defined outside
    studyspec/spec/regimes.py (a test, a plugin); see docs/extending.md."""
    global RegimeJobs, REGIME_JOBS, _JOB
    from . import regimes, study
    from .base import Name

    regimes.AnyRegime = Annotated[Union[members], Field(discriminator="regime")]
    study.Study.model_fields["runs"].annotation = dict[Name, regimes.AnyRegime]
    study.Study.model_rebuild(force=True)
    for c in members:
        if c not in _CACHE:
            _CACHE[c] = _resolved(c, RegimeJob)
        _BY_SPEC[c] = _CACHE[c]
    REGIME_JOBS = tuple(_CACHE[c] for c in members)
    RegimeJobs = Annotated[Union[REGIME_JOBS], Field(discriminator="regime")]
    TrainJob.model_fields["regime"].annotation = RegimeJobs
    TrainJob.model_rebuild(force=True)
    _JOB = TypeAdapter(AnyJob)


def add_regime(cls: type) -> None:
    """Add a regime class (a subclass of studyspec.spec.regimes.Regime with its own
    ``regime: Literal[...]``) to the spec."""
    from . import regimes

    current = typing.get_args(typing.get_args(regimes.AnyRegime)[0])
    set_regimes(tuple(c for c in current if c is not cls) + (cls,))


def remove_regime(cls: type) -> None:
    """Undo ``add_regime``."""
    from . import regimes

    set_regimes(tuple(c for c in typing.get_args(typing.get_args(regimes.AnyRegime)[0]) if c is not cls))


def parse_job(config: dict) -> TrainJob | PathJob:
    """A job's config (``job.json``'s ``config``) validated into its typed job."""
    return _JOB.validate_python(config)


def config(job: TrainJob | PathJob) -> dict:
    """What ``job.json`` holds as ``config``: the job with every default."""
    return job.model_dump(mode="json", by_alias=True)


def section_key(model) -> dict:
    """A section's part of a job's key: non-default fields, without the unhashed ones."""
    out = model.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for name in getattr(model, "unhashed", ()):
        out.pop(name, None)
    return out


def key(job: TrainJob | PathJob) -> dict:
    """What a job's id hashes: its config without defaults and unhashed fields."""
    out = {"kind": job.kind, "seed": job.seed, "data": section_key(job.data), "model": section_key(job.model)}
    if isinstance(job, TrainJob):
        out.update(train=section_key(job.train), regime=section_key(job.regime))
    else:
        out["path"] = section_key(job.path)
    return out
