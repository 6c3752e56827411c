"""The messages between the IOC process and its worker process, and how they are read.

One local socket carries everything, framed by :mod:`multiprocessing.connection`: the
:class:`WorkerConfig` first, then :class:`Request` down and :class:`Reply`, :class:`Ready`,
:class:`LoadFailed`, :class:`DataTaken` and the :mod:`.events` records up. Messages are
pickled; the IOC side reads them with :func:`load_from_worker`, which admits only this
package's engine records, numpy arrays and plain containers, so nothing a profile defines can
be imported into the IOC process by a message.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from typing import Any

from .catalog import RegistryDescription
from .events import DataSnapshot

#: Seconds a Halt waits for the RunEngine to end the plan before giving it up (--halt-timeout).
DEFAULT_HALT_TIMEOUT = 3.0


@dataclass(frozen=True)
class SinkOptions:
    """The document sinks the worker opens (the command line's ``--zmq-*``, ``--tiled-*``...)."""

    zmq_publish: tuple[str, ...] = ()
    zmq_serve: tuple[str, ...] = ()
    tiled_uri: str | None = None
    tiled_batch_size: int = 100
    kafka_topic: str | None = None
    kafka_bootstrap: str = "localhost:9092"
    queue_size: int = 10000


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process needs to load the profile and run plans."""

    profile: str
    data_dir: str
    happi_db: str | None = None
    max_points: int = 1_000_000
    min_free_mb: float = 0.0
    data_capacity: int = 10000
    halt_timeout: float = DEFAULT_HALT_TIMEOUT
    max_rate_hz: float = 10.0
    first_ticket: int = 1
    sinks: SinkOptions = field(default_factory=SinkOptions)
    log_level: int = 20


@dataclass(frozen=True)
class Request:
    id: int
    op: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Reply:
    """The answer to a request: ``value``, or ``error`` with its ``kind`` (argument,
    refused, error)."""

    id: int
    value: Any = None
    error: str = ""
    kind: str = ""


@dataclass(frozen=True)
class Ready:
    """The profile is loaded and the RunEngine waits for plans."""

    registry: RegistryDescription
    description: str
    access_policy: dict[str, Any] | None
    access_groups: dict[str, str]


@dataclass(frozen=True)
class LoadFailed:
    """The profile could not be loaded; the worker exits."""

    text: str


@dataclass(frozen=True)
class DataTaken:
    """A live-data update, copied in the worker (a ``DataUpdate`` cannot cross processes)."""

    snapshot: DataSnapshot


def dump(message: object) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


_ALLOWED_BUILTINS = frozenset(
    {
        "frozenset",
        "set",
        "tuple",
        "list",
        "dict",
        "complex",
        "float",
        "int",
        "str",
        "bytes",
        "bytearray",
        "slice",
        "range",
        "bool",
    }
)


class _WorkerUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _ALLOWED_BUILTINS:
            return super().find_class(module, name)
        if module.startswith("runengine_ioc.engine.") or module == "runengine_ioc.engine":
            return super().find_class(module, name)
        if module == "numpy" or module.startswith(("numpy.", "numpy._core")):
            return super().find_class(module, name)
        if (module, name) in {("copyreg", "_reconstructor"), ("_codecs", "encode")}:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"the worker sent a {module}.{name}, which is not admitted")


def load_from_worker(data: bytes) -> Any:
    """Read a message from the worker, admitting only engine records, numpy and plain data."""
    return _WorkerUnpickler(io.BytesIO(data)).load()
