"""SLURM settings given on the command line: `--partition debug ...` and `--slurm KEY=VALUE`,
checked against the spec's own model (SlurmResources) with located errors."""

from __future__ import annotations

from ...errors import UserError
from .settings import FIELDS, KINDS


def overrides(options: dict, sets: list[str] | None = None) -> tuple[dict, dict[str, dict]]:
    """Command-line launch settings -> (for every kind, per kind). `options`: field -> value or
    None (the explicit --partition ... options); `sets`: KEY=VALUE strings where KEY is a field,
    `train.FIELD`, `path.FIELD` or `[train.|path.]extra.OPTION` (an sbatch option)."""
    from pydantic import ValidationError

    from ...spec.study import SlurmResources

    common = {k: v for k, v in options.items() if v is not None}
    per_kind: dict[str, dict] = {k: {} for k in KINDS}
    for item in sets or []:
        key, eq, value = item.partition("=")
        parts = key.strip().split(".")
        target = common
        if parts[0] in KINDS:
            target, parts = per_kind[parts[0]], parts[1:]
        if not eq or not parts or (parts[0] == "extra") != (len(parts) == 2) or len(parts) > 2:
            raise UserError.single(f"--slurm {item!r}: expected KEY=VALUE with KEY one of "
                                   f"{', '.join(f for f in FIELDS if f != 'extra')}, extra.OPTION, "
                                   "optionally prefixed by train. or path.", file="command line",
                                   hint="e.g. --slurm train.mem=4G --slurm extra.exclude=node7 "
                                   "--slurm 'setup=module load cuda' --slurm 'python=apptainer exec --nv x.sif python'")
        v: object = value
        if parts[0] == "setup":  # a shell line, as written; repeat --slurm setup=... for more lines
            target.setdefault("setup", []).append(value)
            continue
        if parts[0] == "python":
            pass
        elif value.lower() in ("true", "false"):
            v = value.lower() == "true"
        elif value.isdigit():
            v = int(value)
        if parts[0] == "extra":
            target.setdefault("extra", {})[parts[1]] = v
        else:
            target[parts[0]] = v
    for name, layer in [("", common), *((k + ".", per_kind[k]) for k in KINDS)]:
        try:
            SlurmResources.model_validate(layer)
        except ValidationError as e:
            err = e.errors()[0]
            where = name + ".".join(str(x) for x in err["loc"])
            raise UserError.single(err["msg"].removeprefix("Value error, "), file="command line",
                                   where=f"launch setting {where}") from None
    return common, per_kind
