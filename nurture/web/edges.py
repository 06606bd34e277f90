"""What every request must satisfy before a view sees it, and what every response carries.

One mechanism for the whole web layer, so each new page and endpoint inherits it:

- every query parameter and form value must be storable text (``nurture.inputs``): otherwise a 400 naming the
  field, before any view, login check or CSRF check runs;
- URL segments go through converters that refuse what names nothing: text that cannot be stored (the default
  ``string`` and ``path`` converters), an id beyond a BIGINT (the ``int`` converter). Such a URL is a 404;
- every request body is limited: a JSON endpoint's to its ``json_endpoint(max_body_bytes)``, any other to the
  app's ``MAX_CONTENT_LENGTH``. The limit holds for the bytes actually read, whatever the transfer encoding (a
  chunked body has no Content-Length to check), and the answer beyond it is a 413; a JSON endpoint's body is
  parsed by ``nurture.inputs.load_json`` (strict, bounded depth);
- a JSON endpoint's errors from here are JSON in the API's shape (``{"errors": [{"index", "field",
  "message"}]}``); everyone else gets the HTML error page;
- every response carries ``SECURITY_HEADERS`` unless its view set its own value.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any, TypeVar

from flask import Flask, Response, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import IntegerConverter, PathConverter, UnicodeConverter
from werkzeug.routing import ValidationError as NoMatch

from nurture.errors import ValidationError
from nurture.inputs import MAX_ID, first_unstorable, is_storable_id, load_json, unstorable_reason
from nurture.tracking.api_events import ItemError

F = TypeVar("F", bound=Callable[..., Any])

# Set on every response unless the view set its own (a secret-URL page's Referrer-Policy: no-referrer wins).
SECURITY_HEADERS = {
    # No page of ours may be framed (clickjacking the campaign buttons); both spellings, for old browsers.
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
FORM_MIMETYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_BODY_LIMIT = "nurture_max_body_bytes"
_MAX_ID_DIGITS = len(str(MAX_ID))


# --- URL segments -------------------------------------------------------------------------------------------------


class _Storable:
    """A text segment holding a NUL or a lone surrogate names nothing: no route matches it."""

    def to_python(self, value: str) -> str:
        if unstorable_reason(value) is not None:
            raise NoMatch()
        return value


class StorableString(_Storable, UnicodeConverter):
    """``<name>`` and ``<string:name>``."""


class StorablePath(_Storable, PathConverter):
    """``<path:name>``."""


class StorableId(IntegerConverter):
    """``<int:name>``: ASCII digits only, and at most ``MAX_ID`` (a larger id cannot be in a BIGINT column);
    it never converts more digits than an id can have, so a 10,000-digit segment costs nothing."""

    regex = r"[0-9]+"

    def to_python(self, value: str) -> int:
        if len(value.lstrip("0")) > _MAX_ID_DIGITS:
            raise NoMatch()
        number: int = super().to_python(value)
        if not is_storable_id(number):
            raise NoMatch()
        return number


CONVERTERS = {"default": StorableString, "string": StorableString, "path": StorablePath, "int": StorableId}


# --- JSON endpoints and request bodies ----------------------------------------------------------------------------


def json_endpoint(max_body_bytes: int) -> Callable[[F], F]:
    """Mark a view as a JSON endpoint that accepts at most ``max_body_bytes`` of request body."""

    def mark(view: F) -> F:
        setattr(view, _BODY_LIMIT, max_body_bytes)
        return view

    return mark


def _view() -> Any:
    return current_app.view_functions.get(request.endpoint) if request.endpoint else None


def answers_json() -> bool:
    return getattr(_view(), _BODY_LIMIT, None) is not None


def body_limit() -> int | None:
    """How many bytes of body the current request may have: its view's own limit, else the app's."""
    limit: int | None = getattr(_view(), _BODY_LIMIT, None)
    return limit if limit is not None else current_app.config.get("MAX_CONTENT_LENGTH")


class CappedInput(io.RawIOBase):
    """``wsgi.input`` that raises ``RequestEntityTooLarge`` as soon as more than ``limit`` bytes are read from
    it: the limit holds for what is read, however the body is framed (a Content-Length, or chunks)."""

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # Asking for one byte beyond the limit is how an over-long body shows itself.
        data = self._stream.read(min(len(buffer), self._limit + 1 - self._read))
        self._read += len(data)
        if self._read > self._limit:
            raise RequestEntityTooLarge()
        buffer[: len(data)] = data
        return len(data)


def _limit_body() -> None:
    limit = body_limit()
    if limit is None:
        return
    if (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()
    request.environ["wsgi.input"] = CappedInput(request.environ["wsgi.input"], limit)
    # Werkzeug stops reading a chunked body at max_content_length without a word, so it may read one byte more:
    # that byte is CappedInput's cue to answer 413.
    request.max_content_length = limit + 1


def request_body() -> bytes:
    """The request's body, read within its limit (``body_limit``): ``RequestEntityTooLarge`` (413) as soon as
    more is read, with or without a Content-Length."""
    return request.get_data(cache=False)


def request_json(where: str = "body") -> Any:
    """The request's body as strict JSON (``nurture.inputs.load_json``); ``ValidationError`` naming the path."""
    return load_json(request_body(), where)


def json_error(status: int, field: str, message: str) -> tuple[Response, int]:
    """The API's error answer: one error, about the request as a whole (``index`` null)."""
    return jsonify(errors=[ItemError(None, field, message).as_json()]), status


def _error_page(status: int, title: str, message: str) -> ResponseReturnValue:
    return render_template("error.html", code=status, title=title, message=message), status


def _refuse(status: int, title: str, error: ValidationError) -> ResponseReturnValue:
    if answers_json():
        return json_error(status, error.where or "body", error.message)
    return _error_page(status, title, str(error))


# --- hooks --------------------------------------------------------------------------------------------------------


def _request_values() -> Iterable[tuple[str, str]]:
    values: Iterable[tuple[str, str]] = request.args.items(multi=True)
    # A JSON endpoint's body is checked by load_json; reading it as a form here would consume it.
    if request.mimetype in FORM_MIMETYPES and not answers_json():
        values = chain(values, request.form.items(multi=True))
    return values


def check_request() -> ResponseReturnValue | None:
    # First, before anything reads the body: werkzeug makes the request's stream once, on first use.
    _limit_body()
    error = first_unstorable(_request_values())
    if error is not None:
        return _refuse(400, "Bad request", error)
    return None


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def too_large(_error: RequestEntityTooLarge) -> ResponseReturnValue:
    limit = body_limit()
    message = f"larger than {limit} bytes" if limit is not None else "too large"
    return _refuse(413, "Too large", ValidationError(message, where="body"))


def init_app(app: Flask) -> None:
    """Call before any blueprint registers: routes bind their converters when they are added."""
    app.url_map.converters.update(CONVERTERS)
    app.before_request(check_request)
    app.after_request(add_security_headers)
    app.register_error_handler(RequestEntityTooLarge, too_large)
