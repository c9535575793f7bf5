"""The `studyspec` command. Nothing here imports torch: jobs run in worker processes."""

from __future__ import annotations

import gc
import json
import sys
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Optional

import typer

from .errors import UserError
from .store import StoreError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Declarative studies of sparse neural networks: plan, launch, collect.")

SpecArg = typer.Argument(..., help="study spec (YAML)", show_default=False)
StoreOpt = typer.Option(None, "--store", help="job store directory (default: the spec's output.store)")
OverridesArg = typer.Argument(None, metavar="[KEY.PATH=VALUE]...", show_default=False,
                              help="overrides of spec keys, values read as YAML: train.steps=300 'sweep.seed=[0,1]'")
JsonOpt = typer.Option(False, "--json", help="print one JSON object instead (shape: docs/json.md)")
DataCheckOpt = typer.Option(True, "--data-check/--no-data-check",
                            help="check that each dataset root holds its files "
                                 "(skip for a spec meant for another machine)")


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def user_errors(fn):
    """Print user errors as located messages and exit 2, never with a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print(str(e), file=sys.stderr)
            raise typer.Exit(2)
        except StoreError as e:  # a symbolic link or a corrupt file in the store
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(2)
        except OSError as e:  # an unwritable store or results directory, a name too long...: one line
            what = f" {e.filename!r}" if e.filename else ""
            print(f"error: cannot use{what}: {e.strerror or e}", file=sys.stderr)
            print("  hint: check that the directory exists and that you may write there (--store, output.store, "
                  "output.results)", file=sys.stderr)
            raise typer.Exit(2)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM during a local launch (executors/local.py)
            print("interrupted: finished jobs are kept; launch again to run the rest", file=sys.stderr)
            raise typer.Exit(getattr(e, "exit_code", 130))
    return wrapper


def _load(spec: Path, data_check: bool = True, overrides: Optional[list[str]] = None):
    from .overrides import load

    return load(spec, overrides, data_check=data_check)


def _plan_and_store(spec: Path, store: Optional[Path], data_check: bool = True,
                    overrides: Optional[list[str]] = None, loaded=None):
    """The spec (adaptive seeds: at the waves begun in the store, or as given in `loaded`), its plan, the store."""
    from .adaptive import current
    from .plan import build
    from .store import Store

    if loaded is None:
        loaded = _load(spec, data_check, overrides)
        st = Store(store or loaded.study.output.store)
        loaded = current(loaded, st)
    else:
        st = Store(store or loaded.study.output.store)
    plan = build(loaded.study)
    # the plan lives as long as the command: its objects (a few per job) leave the cyclic
    # collector's generations, which scanned them again and again after build (about 0.2 s
    # of CPU for 10^5 jobs); they are freed as usual when the command ends
    gc.freeze()
    return loaded, plan, st


@app.command()
@user_errors
def validate(spec: Path = SpecArg, overrides: Optional[list[str]] = OverridesArg, data_check: bool = DataCheckOpt,
             as_json: bool = JsonOpt):
    """Check a spec (schema, references, sweep, dataset roots) and exit 2 with located errors if it is wrong."""
    if as_json:
        from . import jsonout

        try:
            loaded = _load(spec, data_check, overrides)
        except UserError as e:
            print(jsonout.dump(jsonout.invalid(str(spec), e, overrides)))
            raise typer.Exit(2)
        print(jsonout.dump(jsonout.validated(str(spec), loaded, overrides)))
        return
    loaded = _load(spec, data_check, overrides)
    s = loaded.study
    print(f"{spec}: ok (study {s.study}: {len(s.runs)} runs, {len(s.paths)} paths)")


def _table(plan, store, states: dict[str, str] | None = None, columns: tuple[str, ...] = ()):
    """Per stage and run/path name: jobs, done, the states in `columns`, to run.
    `states`: job id -> state (an executor's status); None: done or to run from the store alone."""
    from rich.table import Table

    table = Table(title=f"study {plan.study.study}", title_justify="left")
    for col in ["stage", "kind", "name", "jobs", "done", *columns, "to run"]:
        table.add_column(col, justify="right" if col not in ("kind", "name") else "left")
    counts = {}
    names = plan.names()
    done = store.done_among(plan.jobs) if states is None else set()
    for stage, jobs in enumerate(plan.stages()):
        by_name: dict[tuple, list] = {}
        for job in jobs:
            key = (job.kind, ", ".join(names.get(job.id, ())))
            by_name.setdefault(key, []).append(job.id)
        for (kind, name), ids in by_name.items():
            st = [states[j] if states is not None else ("done" if j in done else "to run") for j in ids]
            for s in st:
                counts[s] = counts.get(s, 0) + 1
            table.add_row(str(stage), kind, name, str(len(ids)), str(st.count("done")),
                          *(str(st.count(c)) for c in columns), str(st.count("to run")))
    return table, counts


def _describe(plan) -> str:
    axes = " x ".join(f"{d.name}={len(d.values)}" for d in plan.dims) or "no sweep"
    kinds = {k: sum(j.kind == k for j in plan.jobs.values()) for k in ("train", "path")}
    return f"{len(plan.jobs)} jobs ({kinds['train']} train, {kinds['path']} path) over {axes}"


@app.command()
@user_errors
def plan(spec: Path = SpecArg, overrides: Optional[list[str]] = OverridesArg, store: Optional[Path] = StoreOpt,
         data_check: bool = DataCheckOpt, as_json: bool = JsonOpt):
    """Print the DAG of jobs: stages, counts, what is done and what would run. Writes nothing."""
    loaded, p, st = _plan_and_store(spec, store, data_check, overrides)
    if as_json:
        from . import jsonout

        done = st.done_among(p.jobs)
        states = {j: "done" if j in done else "to run" for j in p.jobs}
        print(jsonout.dump(jsonout.jobs("plan", str(spec), p, st, states, {}, overrides)))
        return
    console = _console()
    table, counts = _table(p, st)
    console.print(table)
    console.print(f"{_describe(p)}; {counts.get('done', 0)} done, {counts.get('to run', 0)} to run; store {st.root}")
    from .estimate import describe as estimate

    console.print(estimate(p))


class Executor(str, Enum):
    local = "local"
    slurm = "slurm"


ExecutorOpt = typer.Option(None, "--executor", "-e", help="where jobs run (default: the spec's launch.executor)")


@app.command()
@user_errors
def status(spec: Path = SpecArg, overrides: Optional[list[str]] = OverridesArg, store: Optional[Path] = StoreOpt,
           as_json: bool = JsonOpt, executor: Optional[Executor] = typer.Option(
               None, "--executor", "-e", help="ask this executor (default: the one that launched the study)")):
    """Show per stage how many jobs are done, running, failed or still to run."""
    from . import executors

    loaded, p, st = _plan_and_store(spec, store, overrides=overrides)
    ex = executors.of_study(loaded, st, executor.value if executor else None)
    got = ex.status(p, st)
    if as_json:
        from . import jsonout

        print(jsonout.dump(jsonout.jobs("status", str(spec), p, st, got.states, got.tasks, overrides)))
        return
    console = _console()
    table, counts = _table(p, st, got.states, ex.columns)
    console.print(table)
    for jid, state in got.states.items():
        if state == "failed":
            console.print(f"[red]failed[/] {', '.join(p.names_of(jid))} {jid}: log {st.log(jid)}")
        elif state == "cancelled":
            console.print(f"[yellow]cancelled[/] {', '.join(p.names_of(jid))} {jid} (an upstream job failed, "
                          f"or `studyspec cancel`): launch again to submit it")
        elif state == "corrupt":
            console.print(f"[red]corrupt[/] {', '.join(p.names_of(jid))} {jid}: {st.shard_problem(jid)} "
                          f"(not done: launch runs it again; `studyspec verify` checks every job)")
        elif state == "running" and (holder := st.holder(jid)):
            console.print(f"running {', '.join(p.names_of(jid))} {jid}: {holder}")
    console.print(f"{_describe(p)}; " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))


WorkersOpt = typer.Option(None, "--workers", "-j", min=1, help="parallel jobs (default: launch.workers or CPU count)")
SlurmSetOpt = typer.Option(None, "--slurm", "-S", metavar="KEY=VALUE",
                           help="SLURM setting for every job (KEY) or one kind (train.KEY, path.KEY); "
                                "extra.OPTION=VALUE passes any sbatch option. Repeatable")


def _launch(spec: Path, store: Optional[Path], executor: Optional[Executor], options,
            overrides: Optional[list[str]] = None, loaded=None, waves: bool = False):
    """Plan, then launch on the chosen executor (command line, else the spec's launch.executor).
    `waves` (launch of an adaptive study): when the current wave is complete, collect, decide
    the claims and launch the next wave if one is undecided."""
    from . import executors

    loaded, p, st = _plan_and_store(spec, store, overrides=overrides, loaded=loaded)
    if waves and loaded.study.seeds is not None and st.done_among(p.jobs) == set(p.jobs):
        nxt = _next_wave(loaded, _collect(loaded, p, st, None))
        if nxt is not None:
            loaded, p, st = _plan_and_store(spec, store, loaded=nxt)
    ex = executors.create(executor.value if executor else loaded.study.launch.executor, loaded, options)
    console = _console()
    console.print(f"study {p.study.study}: {_describe(p)}")
    got = ex.launch(p, st, console)
    for line in got.summary:
        console.print(line)
    return loaded, p, st, ex, got


@app.command()
@user_errors
def launch(spec: Path = SpecArg, overrides: Optional[list[str]] = OverridesArg, store: Optional[Path] = StoreOpt,
           workers: Optional[int] = WorkersOpt,
           executor: Optional[Executor] = ExecutorOpt,
           partition: Optional[str] = typer.Option(None, "--partition", "-p", help="SLURM partition"),
           account: Optional[str] = typer.Option(None, "--account", "-A", help="SLURM account"),
           qos: Optional[str] = typer.Option(None, "--qos", help="SLURM quality of service"),
           time: Optional[str] = typer.Option(None, "--time", "-t", help="time limit per job (minutes or D-HH:MM:SS)"),
           nodes: Optional[int] = typer.Option(None, "--nodes", "-N", help="nodes per job"),
           tasks_per_node: Optional[int] = typer.Option(None, "--tasks-per-node", help="tasks per node"),
           gpus_per_node: Optional[int] = typer.Option(None, "--gpus-per-node", help="GPUs per node"),
           cpus_per_task: Optional[int] = typer.Option(None, "--cpus-per-task", "-c", help="CPUs (torch threads) per job"),
           mem: Optional[str] = typer.Option(None, "--mem", help="memory per node, e.g. 4G"),
           constraint: Optional[str] = typer.Option(None, "--constraint", help="node features"),
           array_parallelism: Optional[int] = typer.Option(None, "--array-parallelism",
                                                           help="at most this many tasks of an array at once"),
           sets: Optional[list[str]] = SlurmSetOpt):
    """Run every job that is not done yet, in dependency order (local), or queue them all and return (slurm)."""
    from .executors import Options

    slurm = dict(partition=partition, account=account, qos=qos, time=time, nodes=nodes, tasks_per_node=tasks_per_node,
                 gpus_per_node=gpus_per_node, cpus_per_task=cpus_per_task, mem=mem, constraint=constraint,
                 array_parallelism=array_parallelism)
    *_, got = _launch(spec, store, executor, Options(workers=workers, slurm=slurm, sets=sets or []), overrides,
                      waves=True)
    if not got.ok:
        raise typer.Exit(1)


@app.command()
@user_errors
def cancel(spec: Path = SpecArg, overrides: Optional[list[str]] = OverridesArg, store: Optional[Path] = StoreOpt):
    """Cancel the study's queued and running jobs (finished jobs are kept; launch again to resume)."""
    from . import executors

    loaded, p, st = _plan_and_store(spec, store, overrides=overrides)
    ex = executors.of_study(loaded, st)
    gone = ex.cancel(p, st)
    _console().print(f"cancelled {len(gone)} queued or running job(s) of study {p.study.study} ({ex.name})")


def _collect(loaded, p, st, out: Optional[Path], fmt: str = "netcdf"):
    from .collect import collect_to, export

    path = out or Path(loaded.study.output.results) / f"{loaded.study.study}.nc"
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UserError.single("--format parquet needs pyarrow", file="studyspec collect", hint="pip install pyarrow, or use --format csv")
    from .overrides import describe

    got = collect_to(p, st, path, loaded.source.text, command="studyspec " + " ".join(sys.argv[1:]),
                     extra_attrs={"overrides": describe(getattr(loaded.source, "overrides", None))})
    ds = got.ds
    _console().print(f"wrote {path} ({ds.attrs['jobs_collected']}/{ds.attrs['jobs_total']} jobs; read "
                     f"{len(got.read)} new shard(s), reused {len(got.reused)}; "
                     f"variables: {', '.join(sorted(ds.data_vars))})")
    if ds.attrs.get("environment_mixed"):
        _console().print(f"warning: the jobs ran under different versions: {ds.attrs['environment_differences']} "
                         "(environment.json in each job's run directory)")
    if fmt != "netcdf":
        table = export(ds, path.with_suffix("." + fmt), fmt)
        _console().print(f"wrote {table} (one row per run or path, sweep point and step or t)")
    if got.skipped:
        for jid, why in got.skipped.items():
            _console().print(f"[red]skipped[/] {', '.join(p.names_of(jid))} {jid}: {why}")
        _console().print(f"collect skipped {len(got.skipped)} job(s) whose shard is not valid: their cells are "
                         f"marked not done; `studyspec verify --quarantine` sets them aside to run again")
        raise typer.Exit(1)
    return path


class TableFormat(str, Enum):
    netcdf = "netcdf"
    csv = "csv"
    parquet = "parquet"


OutOpt = typer.Option(None, "--out", "-o", help="netCDF file (default: <output.results>/<study>.nc)")


@app.command()
@user_errors
def collect(spec: Path = SpecArg, overrides: Optional[list[str]] = OverridesArg, store: Optional[Path] = StoreOpt,
            out: Optional[Path] = OutOpt,
            fmt: TableFormat = typer.Option("netcdf", "--format", help="also export a flat table next to the .nc")):
    """Merge the finished jobs' shards into one netCDF dataset (reads only new shards)."""
    _collect(*_plan_and_store(spec, store, overrides=overrides), out, fmt.value)


@app.command()
@user_errors
def verify(spec: Path = SpecArg, overrides: Optional[list[str]] = OverridesArg, store: Optional[Path] = StoreOpt,
           quarantine: bool = typer.Option(False, "--quarantine",
                                           help="move every corrupt job's run directory to <store>/_quarantine/ "
                                                "so that the next launch runs exactly those jobs again")):
    """Check every job of the study in the store: its shard's shape and its artifacts' hashes;
    list what is corrupt (exit 1), and with --quarantine set it aside."""
    from .verify import verify_plan

    loaded, p, st = _plan_and_store(spec, store, overrides=overrides)
    console = _console()
    report = verify_plan(p, st, progress=console)
    for jid, problems in report.corrupt.items():
        console.print(f"[red]corrupt[/] {', '.join(p.names_of(jid))} {jid}:")
        for problem in problems:
            console.print(f"  {problem}")
    console.print(f"verified {len(report.ok)} done job(s): {len(report.ok) - len(report.corrupt)} ok, "
                  f"{len(report.corrupt)} corrupt; {report.not_done} not done")
    if report.corrupt and quarantine:
        for jid, problems in report.corrupt.items():
            dest = st.quarantine(jid, "studyspec verify found:\n" + "\n".join(problems))
            console.print(f"moved {jid} to {dest}")
        console.print(f"launch again to run the {len(report.corrupt)} quarantined job(s)")
    if report.corrupt:
        raise typer.Exit(1)


@app.command()
@user_errors
def run(spec: Path = SpecArg, overrides: Optional[list[str]] = OverridesArg, store: Optional[Path] = StoreOpt,
        workers: Optional[int] = WorkersOpt,
        out: Optional[Path] = OutOpt, executor: Optional[Executor] = ExecutorOpt, sets: Optional[list[str]] = SlurmSetOpt):
    """launch, wait, then collect; with adaptive seeds (`seeds:`), again with a new wave of seeds
    while a claim is undecided (up to seeds.max)."""
    from .executors import Options

    loaded = None
    while True:
        loaded, p, st, ex, got = _launch(spec, store, executor, Options(workers=workers, sets=sets or []),
                                         overrides, loaded=loaded)
        states = ex.wait(p, st).states
        path = _collect(loaded, p, st, out)
        bad = sorted(set(states.values()) - {"done"})
        if bad or not got.ok:
            _console().print(f"not all jobs are done ({', '.join(bad)}): see studyspec status {spec}")
            raise typer.Exit(1)
        loaded = _next_wave(loaded, path)
        if loaded is None:
            return


def _next_wave(loaded, path: Path):
    """After a complete wave collected into `path`: the spec with the next wave of seeds, or None
    (no adaptive seeds, every claim decided, or seeds.max reached)."""
    from .adaptive import at_count, next_count

    if loaded.study.seeds is None:
        return None
    n = len(loaded.study.sweep["seed"])
    nxt, open_ = next_count(loaded, path)
    console = _console()
    if nxt is None:
        console.print(f"seeds: {n}; " + (f"still undecided at seeds.max: {', '.join(open_)}" if open_
                                         else "every claim is decided"))
        return None
    console.print(f"seeds: {n}; undecided: {', '.join(open_)}; adding seeds {n} .. {nxt - 1}")
    return at_count(loaded, nxt)


ReportOut = typer.Option(None, "--out", "-o", help="report folder (default: <output.results>/<study>/report)")


@app.command()
@user_errors
def report(spec: Path = SpecArg, overrides: Optional[list[str]] = OverridesArg, store: Optional[Path] = StoreOpt,
           out: Optional[Path] = ReportOut,
           nc: Optional[Path] = typer.Option(None, "--nc", help="collected netCDF file (default: "
                                             "<output.results>/<study>.nc); collected first, incrementally")):
    """Collect (new shards only), then write the figures and the table of the spec's claims, decided, and
    report.html: all of it in one self-contained page."""
    import xarray as xr

    from analysis import write_report

    loaded, p, st = _plan_and_store(spec, store, overrides=overrides)
    path = _collect(loaded, p, st, nc)
    folder = out or Path(loaded.study.output.results) / loaded.study.study / "report"
    from analysis.page import write_page

    command = "studyspec " + " ".join(sys.argv[1:])
    with xr.open_dataset(path) as ds:
        md = write_report(ds, folder, source=str(path), command=command, claims=dict(loaded.study.claims))
        html = write_page(ds, md, command=command)
    _print_claims(md.parent / "claims.json")
    _console().print(f"wrote {md} and its figures in {folder}; one page to open or share: {html}")


def _print_claims(path: Path) -> None:
    """The decided claims as a table on the console (the full one is in claims.md)."""
    from rich.table import Table

    decided = json.loads(path.read_text())
    if not decided:
        _console().print("no claims in this spec (`claims:`)")
        return
    table = Table(title="claims (95% Student t interval; decision at the Holm level)", title_justify="left")
    for col in ("claim", "where", "n", "mean", "95% CI", "Holm level", "decision"):
        table.add_column(col, justify="right" if col in ("n", "mean", "Holm level") else "left")

    def f(x):
        return "n/a" if x is None or x != x else f"{x:.3g}"
    for d in decided:
        table.add_row(d["claim"], d["where"] or "-", str(d["n"]), f(d["mean"]), f"[{f(d['ci95'][0])}, {f(d['ci95'][1])}]",
                      f"{d['level']:.3g}", d["decision"])
    _console().print(table)


@app.command()
def schema(markdown: bool = typer.Option(False, "--markdown", help="the reference in Markdown (docs/spec.md)")):
    """Print the JSON Schema of a study spec (for editor completion and validation)."""
    if markdown:
        from .specdoc import markdown as render

        print(render(), end="")
        return
    from .spec import Study

    print(json.dumps(Study.model_json_schema(by_alias=True), indent=2))


def main():
    app()


if __name__ == "__main__":
    main()
