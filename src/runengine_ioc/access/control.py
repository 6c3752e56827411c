"""A client's rights to a PV: the access security file, then the baton.

This is what the Channel Access adapter asks at connect (to show rights), at each write
(to accept or refuse it) and after a change (to show rights anew). Rights of a group
without CALC rules are cached per (group, user, host) until the file is reloaded, so a
write's check is a dictionary look-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .acf import Access, AccessConfig, Grant, InputReader
from .baton import Baton
from .identity import Client

#: Rights when no access security file is in service: everything, as before.
OPEN = Grant(Access.WRITE)
_READ = Grant(Access.READ)


@dataclass
class AccessControl:
    """The rules in service (``config``; None: open access) and the baton."""

    config: AccessConfig | None = None
    baton: Baton = field(default_factory=Baton)
    read_input: InputReader | None = None
    _cache: dict[tuple[str, str, str], Grant] = field(default_factory=dict, repr=False)

    @property
    def open(self) -> bool:
        """No access security file: everyone may read and write (the baton still applies)."""
        return self.config is None

    def reload(self, config: AccessConfig | None) -> None:
        """Put new rules in service (rights must then be shown anew)."""
        self.config = config
        self._cache.clear()

    def file_grant(self, group: str, client: Client) -> Grant:
        """What the access security file alone grants ``client`` on a PV of ``group``."""
        config = self.config
        if config is None:
            return OPEN
        key = (group, client.user, client.host)
        grant = self._cache.get(key)
        if grant is None:
            grant = config.grant(group, client.user, client.host, read_input=self.read_input)
            if not config.group(group).uses_calc:
                self._cache[key] = grant
        return grant

    def grant(self, group: str, client: Client) -> Grant:
        """The rights to show: the file's, made read-only while another holds the baton."""
        grant = self.file_grant(group, client)
        if grant.write and self.baton.blocks(client, group) is not None:
            return _READ
        return grant

    def write_refusal(self, group: str, client: Client) -> str | None:
        """Why ``client`` may not write to a PV of ``group`` now, or None if it may."""
        grant = self.file_grant(group, client)
        if not grant.write:
            return f"{client} has no write access (access security group {group})"
        holder = self.baton.blocks(client, group)
        if holder is not None:
            return f"the baton is held by {holder}"
        return None
