"""Errors that carry a message meant for the person who gave the input."""


class NurtureError(Exception):
    """Base for errors shown to users as one clear line, never as a traceback."""


class ConfigError(NurtureError):
    """A setting is missing or malformed; the message names it."""


class ValidationError(NurtureError):
    """User input is invalid; ``where`` names the place (a field, a rule path, a row)."""

    def __init__(self, message: str, where: str | None = None) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


class NotFound(NurtureError):
    """A named thing (lead, segment, ...) does not exist."""
