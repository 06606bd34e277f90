"""A mailbox (address plus optional display name), parsed from settings and rendered into headers."""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr

from email_validator import EmailNotValidError, validate_email


class InvalidMailbox(ValueError):
    pass


@dataclass(frozen=True)
class Mailbox:
    address: str
    name: str = ""

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    def header_address(self) -> Address:
        """The headerregistry form, which RFC 2047-encodes non-ASCII display names when serialised."""
        local, _, domain = self.address.rpartition("@")
        return Address(display_name=self.name, username=local, domain=domain)

    def __str__(self) -> str:
        return str(self.header_address())


def parse_mailbox(raw: str, *, check_syntax: bool = True) -> Mailbox:
    """``Name <address>`` or a bare address. The address syntax is validated (no DNS lookups)."""
    name, address = parseaddr(raw.strip())
    if not address or "@" not in address:
        raise InvalidMailbox(f"not an email address: {raw!r}")
    if check_syntax:
        try:
            address = validate_email(address, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise InvalidMailbox(str(exc)) from None
    return Mailbox(address=address, name=name.strip())
