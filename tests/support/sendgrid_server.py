"""An HTTP server on 127.0.0.1 that behaves like SendGrid's ``POST /v3/mail/send``.

It checks the bearer key and validates the JSON the way SendGrid documents it (the rules below,
with SendGrid's error shape ``{"errors": [{"message", "field", "help"}]}``), then answers 202 with
an ``X-Message-Id``. Tests can script the next answers: a status with SendGrid's error body and
headers (400, 401, 429 with Retry-After, 500, ...) or a hang until the client gives up. HTTP/1.1
keep-alive works as at SendGrid, and each request records the client connection it came on."""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
RESERVED_HEADERS = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # (host, port) of the client socket: equal for requests that reused a connection.
    connection: tuple[str, int]

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Answer:
    """A scripted answer: ``status`` with SendGrid's error body, or ``hang`` until released."""

    status: int = 202
    errors: tuple[tuple[str, str | None], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    hang: bool = False


def error(field_name: str | None, message: str) -> dict[str, Any]:
    return {"message": message, "field": field_name, "help": None}


def _recipients(personalization: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for kind in ("to", "cc", "bcc"):
        for entry in personalization.get(kind) or []:
            found.append((kind, entry))
    return found


def validate_mail_send(payload: Any) -> list[dict[str, Any]]:
    """SendGrid's documented checks of a Mail Send body; an empty list means valid."""
    if not isinstance(payload, dict):
        return [error(None, "Bad Request")]
    errors: list[dict[str, Any]] = []
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(error("personalizations", "You must have at least one personalization."))
        personalizations = []
    if len(personalizations) > MAX_PERSONALIZATIONS:
        errors.append(
            error(
                "personalizations",
                f"The personalization block is limited to {MAX_PERSONALIZATIONS} personalizations per API "
                f"request. You have provided {len(personalizations)} personalizations. Please consider "
                "splitting this into multiple requests and resending your request.",
            )
        )
    seen: set[str] = set()
    total_recipients = 0
    top_args = payload.get("custom_args") or {}
    for index, personalization in enumerate(personalizations):
        where = f"personalizations.{index}"
        if not isinstance(personalization, dict):
            errors.append(error(where, "Invalid type. Expected: object."))
            continue
        if not personalization.get("to"):
            errors.append(error(f"{where}.to", "The to array is required for all personalization objects, "
                                "and must have at least one email object with a valid email address."))
        for kind, entry in _recipients(personalization):
            total_recipients += 1
            address = entry.get("email") if isinstance(entry, dict) else None
            if not isinstance(address, str) or "@" not in address:
                errors.append(
                    error(f"{where}.{kind}", "Each email object must at least have an email address.")
                )
                continue
            key = address.lower()
            if key in seen:
                errors.append(
                    error(
                        where,
                        "Each unique email address in the personalizations array should only be included "
                        f"once. You have included {address} more than once.",
                    )
                )
            seen.add(key)
        args = {**top_args, **(personalization.get("custom_args") or {})}
        if not all(isinstance(value, str) for value in args.values()):
            errors.append(error(f"{where}.custom_args", "Invalid type. Expected: string, given: other."))
        size = len(json.dumps(args, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_CUSTOM_ARGS_BYTES:
            errors.append(
                error(f"{where}.custom_args", f"The custom_args may not exceed {MAX_CUSTOM_ARGS_BYTES} bytes.")
            )
        errors += _header_errors(personalization.get("headers"), f"{where}.headers")
    if total_recipients > MAX_RECIPIENTS:
        errors.append(error("personalizations", "There is a limit of 1000 total recipients (to + cc + bcc) "
                            "per request."))
    sender = payload.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("email"), str) or "@" not in sender["email"]:
        errors.append(
            error("from.email", "The from object must be provided for every email send. It is an object that "
                  "requires the email parameter, but may also contain a name parameter.")
        )
    every_personalization_has_subject = bool(personalizations) and all(
        isinstance(p, dict) and p.get("subject") for p in personalizations
    )
    if not payload.get("subject") and not every_personalization_has_subject and not payload.get("template_id"):
        errors.append(
            error("subject", "The subject is required. You can get around this requirement if you use a "
                  "template with a subject defined or if every personalization has a subject defined.")
        )
    errors += _content_errors(payload)
    errors += _header_errors(payload.get("headers"), "headers")
    categories = payload.get("categories") or []
    if len(categories) > 10 or any(not isinstance(c, str) or len(c) > 255 for c in categories):
        errors.append(error("categories", "You may not have more than 10 categories per request, each at most "
                            "255 characters."))
    return errors


def _content_errors(payload: dict[str, Any]) -> list[dict[str, Any]]:
    content = payload.get("content")
    if not content:
        if payload.get("template_id"):
            return []
        return [error("content", "Unless a valid template_id is provided, the content parameter is required. "
                      "There must be at least one defined content block.")]
    errors = []
    types = []
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("value"), str) or not block["value"]:
            errors.append(error(f"content.{index}.value", "The content value must be a string at least one "
                                "character in length."))
        else:
            types.append(block.get("type"))
    if "text/plain" in types and types[0] != "text/plain":
        errors.append(error("content", "If present, text/plain must be first, followed by text/html, followed "
                            "by any other content."))
    return errors


def _header_errors(headers: Any, where: str) -> list[dict[str, Any]]:
    if headers is None:
        return []
    if not isinstance(headers, dict):
        return [error(where, "Invalid type. Expected: object.")]
    errors = []
    for name, value in headers.items():
        if name.lower() in RESERVED_HEADERS:
            errors.append(error(where, f"The header {name} is reserved and cannot be set."))
        if not isinstance(value, str):
            errors.append(error(where, f"Invalid type for header {name}. Expected: string."))
    return errors


@dataclass
class FakeSendGrid:
    api_key: str = "SG.test-key"
    requests: list[RecordedRequest] = field(default_factory=list)
    accepted: list[RecordedRequest] = field(default_factory=list)
    script: deque[Answer] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, *answers: Answer) -> None:
        """Script the next answers, in order; afterwards requests are validated normally."""
        with self._lock:
            self.script.extend(answers)

    @property
    def connections(self) -> int:
        return len({request.connection for request in self.requests})

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def _next_answer(self) -> Answer | None:
        with self._lock:
            return self.script.popleft() if self.script else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any = None, headers: tuple[tuple[str, str], ...] = ()) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = RecordedRequest(
                    "POST", self.path, dict(self.headers.items()), body, tuple(self.client_address[:2])
                )
                with fake._lock:
                    fake.requests.append(request)
                if self.path != "/v3/mail/send":
                    self._reply(404, {"errors": [error(None, "not found")]})
                    return
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._reply(
                        401,
                        {"errors": [error(None, "The provided authorization grant is invalid, expired, or revoked")]},
                    )
                    return
                scripted = fake._next_answer()
                if scripted is not None and scripted.hang:
                    fake._release.wait(timeout=30)
                    self.close_connection = True
                    return
                if scripted is not None:
                    errors = [error(field_name, message) for message, field_name in scripted.errors]
                    self._reply(scripted.status, {"errors": errors} if errors else None, scripted.headers)
                    return
                try:
                    payload = json.loads(body)
                except ValueError:
                    self._reply(400, {"errors": [error(None, "Bad Request")]})
                    return
                errors = validate_mail_send(payload)
                if errors:
                    self._reply(400, {"errors": errors})
                    return
                with fake._lock:
                    fake.accepted.append(request)
                self._reply(202, headers=(("X-Message-Id", uuid.uuid4().hex[:22]),))

            def do_GET(self) -> None:
                self._reply(405, {"errors": [error(None, "method not allowed")]})

        return Handler
