"""The one error type a caller of the rendering package has to catch."""

from __future__ import annotations

from nurture.errors import ValidationError


class TemplateProblem(ValidationError):
    """A template cannot be compiled or rendered: a syntax error, a sandbox violation, a limit, a runtime error.

    ``template`` and ``line`` point at the place in the template as its author wrote it (the layout or partial
    where the problem lies, not the assembled email); ``kind`` groups problems for reports:
    syntax, structure, sandbox, limit, runtime, missing, unsubscribe.
    """

    def __init__(self, message: str, template: str | None = None, line: int | None = None, kind: str = "runtime"):
        self.template = template
        self.line = line
        self.kind = kind
        where = None
        if template is not None:
            where = f"{template}, line {line}" if line is not None else template
        super().__init__(message, where)

    def __repr__(self) -> str:
        return f"TemplateProblem({self.kind}: {self})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TemplateProblem):
            return NotImplemented
        return (self.kind, self.template, self.line, self.message) == (
            other.kind,
            other.template,
            other.line,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.template, self.line, self.message))


class TemplateProblems(ValidationError):
    """Several problems at once (a template refused on save): each with its own location."""

    def __init__(self, problems: list[TemplateProblem]) -> None:
        self.problems = problems
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{first.message}{more}", first.where)
