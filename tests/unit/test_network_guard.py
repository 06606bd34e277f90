import socket

import pytest

from tests.conftest import ExternalNetworkError


def test_connecting_outside_loopback_fails():
    with socket.socket() as sock, pytest.raises(ExternalNetworkError):
        sock.connect(("192.0.2.1", 80))


def test_resolving_a_public_name_fails():
    with pytest.raises(ExternalNetworkError):
        socket.getaddrinfo("example.com", 443)


def test_loopback_is_allowed():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
