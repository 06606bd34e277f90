"""A keep-alive transport for ``python_http_client``, the HTTP layer of the ``sendgrid`` package.

The stock client opens a new urllib connection (TCP and TLS handshakes) for every request. Our
personalised emails go one per request, so the SendGrid backend reuses one HTTP/1.1 connection
instead: ``KeepAliveClient`` keeps the library's URL building, headers and error classes and swaps
only ``_make_request``, the hook the library keeps separate for this purpose.

It also tells apart the two ways a request can fail, which decide whether a retry is safe:
``RequestNotSent`` (nothing reached the server) and ``ResponseLost`` (the request went out, the
answer did not come back: the server may have acted on it)."""

from __future__ import annotations

import http.client
import select
import ssl
import urllib.request
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import python_http_client
from python_http_client.exceptions import HTTPError, err_dict


class RequestNotSent(Exception):
    """The request never reached the server; sending it again cannot duplicate anything."""


class ResponseLost(Exception):
    """The request was sent but no complete response arrived (timeout, connection dropped)."""


class _Response:
    """The urllib-style response python_http_client.Response reads from."""

    def __init__(self, status: int, body: bytes, headers: Message) -> None:
        self._status = status
        self._body = body
        self._headers = headers

    def getcode(self) -> int:
        return self._status

    def read(self) -> bytes:
        return self._body

    def info(self) -> Message:
        return self._headers


class KeepAliveConnection:
    """One persistent HTTP/1.1 connection to one origin, reopened when the server closes it."""

    def __init__(self, base_url: str, timeout: float, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._connection: http.client.HTTPConnection | None = None
        # How many TCP connections were opened: observable reuse, for tests and logs.
        self.connections_opened = 0

    def _fresh(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            context = self._ssl_context or ssl.create_default_context()
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=context)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _usable(self) -> http.client.HTTPConnection | None:
        """The open connection, unless the server closed it while idle (then it reads as ready: EOF)."""
        connection = self._connection
        if connection is None or connection.sock is None:
            return None
        try:
            readable, _, _ = select.select([connection.sock], [], [], 0)
        except (OSError, ValueError):
            readable = [connection.sock]
        if readable:
            self.close()
            return None
        return connection

    def _connected(self, timeout: float) -> http.client.HTTPConnection:
        connection = self._usable()
        if connection is not None:
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            return connection
        connection = self._fresh(timeout)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            raise RequestNotSent(f"cannot connect to {self.host}: {exc}") from exc
        self.connections_opened += 1
        self._connection = connection
        return connection

    def send(self, request: urllib.request.Request, timeout: float) -> _Response:
        connection = self._connected(timeout)
        url = urlsplit(request.full_url)
        target = url.path + (f"?{url.query}" if url.query else "")
        headers = dict(request.header_items())
        try:
            connection.request(request.get_method(), target, body=request.data, headers=headers)
        except (OSError, http.client.HTTPException) as exc:
            # sendall failed, so the server cannot hold the whole request.
            self.close()
            raise RequestNotSent(f"sending to {self.host} failed: {exc}") from exc
        try:
            response = connection.getresponse()
            body = response.read()
        except TimeoutError as exc:
            self.close()
            raise ResponseLost(f"no answer from {self.host} within {timeout:g}s") from exc
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ResponseLost(f"connection to {self.host} lost before the answer: {exc!r}") from exc
        if response.will_close:
            self.close()
        if response.status >= 400:
            error_class = err_dict.get(response.status, HTTPError)
            raise error_class(response.status, response.reason, body, response.headers)
        return _Response(response.status, body, response.headers)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class KeepAliveClient(python_http_client.Client):
    """python_http_client.Client whose requests all go through one ``KeepAliveConnection``."""

    def __init__(self, host: str, *, connection: KeepAliveConnection, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self._connection = connection

    def _build_client(self, name: str | None = None) -> KeepAliveClient:
        # The library builds a new client per URL segment; keep the subclass and the connection.
        url_path = [*self._url_path, name] if name else self._url_path
        return KeepAliveClient(
            self.host,
            connection=self._connection,
            request_headers=self.request_headers,
            version=self._version,
            url_path=url_path,
            append_slash=self.append_slash,
            timeout=self.timeout,
        )

    def _make_request(self, opener: Any, request: urllib.request.Request, timeout: float | None = None) -> _Response:
        return self._connection.send(request, timeout or self.timeout or self._connection.timeout)
