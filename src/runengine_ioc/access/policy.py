"""Which plans and devices each group of users may use: bluesky-queueserver's allow-lists.

The file (``--policy FILE``, YAML) has queueserver's ``user_groups`` section, and says which
clients belong to which group (queueserver gets the group from its API; Channel Access gives
only a user and a host)::

    user_groups:
      root:                      # applies to everyone, on top of their own group
        allowed_plans: [null]    # null: everything
        forbidden_plans: [":^_"]
        allowed_devices: [null]
        forbidden_devices: [":^_:?.*"]
      remote:
        allowed_plans: ["^count$", "^scan$"]
        forbidden_plans: [null]  # null: nothing
        allowed_devices: ["^det$", "^motor$"]
        forbidden_devices: [null]
    members:                     # first group (in file order) that names the client wins
      operators: [alice, "bob@ctl1"]
      remote: ["*"]              # user, @host, user@host or "*"

A plan or device is allowed when it matches a pattern of ``allowed_*`` and none of
``forbidden_*``, both in ``root`` (if the file has it) and in the client's own group.
Patterns are Python regular expressions searched in the name (``re.search``), as in
queueserver. Device names may name components (``det.Imax``): a plain pattern matches the
top-level name only, so a component is refused unless a *component pattern* allows it:
``":"`` followed by one regular expression per level, ``?`` before the last one to match it
at any depth, and an optional ``:depth=N`` (``":^det:?.*"`` is ``det`` and all its
components; ``":^det:^Imax$"`` is ``det`` and ``det.Imax``). A refusal names the rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.catalog import RegistryView
from ..engine.signatures import SEPARATORS
from .identity import Client

ROOT_GROUP = "root"
_LISTS = ("allowed_plans", "forbidden_plans", "allowed_devices", "forbidden_devices")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message says where."""


class PolicyRefusal(Exception):
    """A plan or device the client's group may not use; the message names the rule."""


@dataclass(frozen=True)
class Pattern:
    """One entry of an allow-list: a plain regular expression or a component pattern."""

    text: str | None
    levels: tuple[re.Pattern[str], ...] = ()
    any_depth: bool = False
    depth: int | None = None

    @classmethod
    def compile(cls, text: Any, where: str) -> Pattern:
        if text is None:
            return cls(None)
        if not isinstance(text, str):
            raise PolicyError(f"{where}: {text!r} is not a pattern (a string or null)")
        try:
            if not text.startswith(":"):
                return cls(text, (re.compile(text),))
            parts = text[1:].split(":")
            depth = None
            if parts and parts[-1].startswith("depth="):
                depth = int(parts.pop()[6:])
            any_depth = bool(parts) and parts[-1].startswith("?")
            if any_depth:
                parts[-1] = parts[-1][1:]
            if not parts:
                raise PolicyError(f"{where}: {text!r} has no pattern")
            return cls(text, tuple(re.compile(p) for p in parts), any_depth, depth)
        except (re.error, ValueError) as exc:
            raise PolicyError(f"{where}: {text!r} is not a valid pattern: {exc}") from None

    def matches(self, name: str, *, everything_if_null: bool) -> bool:
        if self.text is None:
            return everything_if_null
        parts = name.split(".")
        if not self.text.startswith(":"):
            return len(parts) == 1 and self.levels[0].search(name) is not None
        if self.depth is not None and len(parts) > self.depth:
            return False
        fixed = self.levels[:-1] if self.any_depth else self.levels
        if len(parts) < len(fixed) or (not self.any_depth and len(parts) != len(fixed)):
            return False
        if not all(p.search(part) for p, part in zip(fixed, parts, strict=False)):
            return False
        if self.any_depth:  # the last level, at any depth (or none)
            return all(self.levels[-1].search(part) for part in parts[len(fixed) :])
        return True


@dataclass(frozen=True)
class GroupRules:
    """The four lists of one user group."""

    name: str
    lists: Mapping[str, tuple[Pattern, ...]]

    def refusal(self, what: str, name: str) -> str | None:
        """Why ``name`` (a ``plan`` or ``device``) is refused by this group, or None."""
        allowed = self.lists[f"allowed_{what}s"]
        if not any(p.matches(name, everything_if_null=True) for p in allowed):
            shown = ", ".join(repr(p.text) for p in allowed) or "(none)"
            return f"{what} {name!r} is not in allowed_{what}s of group {self.name!r} ({shown})"
        for pattern in self.lists[f"forbidden_{what}s"]:
            if pattern.matches(name, everything_if_null=False):
                return (
                    f"{what} {name!r} is forbidden for group {self.name!r} "
                    f"(forbidden_{what}s: {pattern.text!r})"
                )
        return None


@dataclass(frozen=True)
class Member:
    """One entry of ``members``: ``*``, ``user``, ``@host`` or ``user@host``."""

    user: str | None
    host: str | None

    @classmethod
    def parse(cls, text: str) -> Member:
        if text == "*":
            return cls(None, None)
        user, at, host = text.partition("@")
        return cls(user or None, host.lower() if at and host else None)

    def matches(self, client: Client) -> bool:
        return (self.user is None or self.user == client.user) and (
            self.host is None or self.host == client.host.lower()
        )


@dataclass(frozen=True)
class PlanPolicy:
    """Allow-lists per user group, and who belongs to which group."""

    groups: Mapping[str, GroupRules]
    members: tuple[tuple[str, tuple[Member, ...]], ...]
    source: str = ""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "") -> PlanPolicy:
        """Build from the YAML's content; PolicyError names what is wrong."""
        if not isinstance(data, Mapping) or not isinstance(data.get("user_groups"), Mapping):
            raise PolicyError("the policy needs a 'user_groups' mapping")
        groups: dict[str, GroupRules] = {}
        for name, spec in data["user_groups"].items():
            spec = spec or {}
            lists: dict[str, tuple[Pattern, ...]] = {}
            for key in _LISTS:
                items = spec.get(key, [None] if key.startswith("allowed") else [])
                if not isinstance(items, list):
                    raise PolicyError(f"user_groups.{name}.{key} must be a list")
                lists[key] = tuple(
                    Pattern.compile(item, f"user_groups.{name}.{key}") for item in items
                )
            groups[str(name)] = GroupRules(str(name), lists)
        members_spec = data.get("members") or {}
        if not isinstance(members_spec, Mapping):
            raise PolicyError("'members' must map group names to lists of clients")
        members: list[tuple[str, tuple[Member, ...]]] = []
        for name, entries in members_spec.items():
            if name not in groups or name == ROOT_GROUP:
                raise PolicyError(f"members: {name!r} is not a user group (other than root)")
            if isinstance(entries, str):
                entries = [entries]
            members.append((str(name), tuple(Member.parse(str(e)) for e in entries or ())))
        return cls(groups, tuple(members), source)

    @classmethod
    def from_file(cls, path: str | Path) -> PlanPolicy:
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"{path}: {exc}") from exc
        try:
            return cls.from_mapping(data, str(path))
        except PolicyError as exc:
            raise PolicyError(f"{path}: {exc}") from exc

    def group_of(self, client: Client) -> str | None:
        """The client's user group (the first in ``members`` that names it)."""
        for name, entries in self.members:
            if any(member.matches(client) for member in entries):
                return name
        return None

    def check(self, client: Client, plan: str, devices: Iterable[str]) -> None:
        """Raise PolicyRefusal unless the client's group may run ``plan`` on ``devices``."""
        name = self.group_of(client)
        if name is None:
            raise PolicyRefusal(f"{client} belongs to no user group of the policy")
        chain = [g for g in (self.groups.get(ROOT_GROUP), self.groups[name]) if g is not None]
        for group in chain:
            reason = group.refusal("plan", plan)
            if reason:
                raise PolicyRefusal(reason)
        for device in devices:
            for group in chain:
                reason = group.refusal("device", device)
                if reason:
                    raise PolicyRefusal(reason)


def devices_named(registry: RegistryView, plan: str, arguments: Mapping[str, Any]) -> list[str]:
    """The device names (``det``, ``det.Imax``) in a plan's arguments, by its parameters.

    Only parameters that take devices are read (as the registry resolves them: one name, a
    list of names, or one string of names separated by spaces or commas).
    """
    names: list[str] = []
    for param in registry.parameters(plan):
        if param.kind not in ("device", "devices") or param.name not in arguments:
            continue
        value = arguments[param.name]
        items: Sequence[Any]
        if isinstance(value, str):
            items = (
                [n for n in SEPARATORS.split(value) if n] if param.kind == "devices" else [value]
            )
        elif isinstance(value, list | tuple):
            items = value
        else:
            items = []
        names.extend(item.strip() for item in items if isinstance(item, str) and item.strip())
    return names
