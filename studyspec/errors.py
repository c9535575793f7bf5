"""User-facing errors: located, with a hint, printed without a traceback (exit code 2)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Problem:
    """One thing wrong with a spec, at a place in a file."""

    message: str
    file: str = "<spec>"
    line: int | None = None
    col: int | None = None
    where: str = ""  # dotted path into the spec, e.g. runs.prune.schedule.begin
    hint: str | None = None

    def __str__(self) -> str:
        loc = self.file
        if self.line is not None:
            loc += f":{self.line}:{self.col or 1}"
        text = f"{loc}: {self.where + ': ' if self.where else ''}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


@dataclass
class UserError(Exception):
    """An error the user can fix; the CLI prints it and exits with code 2."""

    problems: list[Problem] = field(default_factory=list)

    @classmethod
    def single(cls, message: str, hint: str | None = None, **where) -> "UserError":
        return cls([Problem(message, hint=hint, **where)])

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


def closest(name: str, choices) -> str | None:
    """The closest valid name to a misspelt one, or None."""
    import difflib

    found = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return found[0] if found else None
