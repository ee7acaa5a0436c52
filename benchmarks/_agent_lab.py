"""One real gateway agent (``firezone-gateway --portal-url``) in a network namespace.

Used by benchmarks/revocation.py to measure how long a real agent takes to *apply* a revocation.
The portal listens on a unix socket (the filesystem is shared by all namespaces); the TCP->unix
bridge of tests/e2e/portal_lab.py runs inside the agent's namespace, so the agent connects to a
plain ``http://127.0.0.1:PORT`` without any interface in the root namespace.

The agent logs one JSON object per line (``--log-json``). A reader thread takes stdout+stderr line
by line and keeps every event with the time this process read it (``recv``). The agent logs a
portal message right after `GatewayState` committed it and its commands were applied to the core
under the core lock, so the event's own ``ts`` (unix seconds, millisecond resolution, the same
clock as this process: namespaces do not have their own clocks) is when the change took effect
in the data plane.

Everything (namespace, bridge, agent, temp files) belongs to a `tests.e2e.netns.Lab` with names
unique per run; `close()` removes it, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tests.e2e.netns import REPO_ROOT, Lab, env_with_pythonpath, missing_requirements, unique_name
from tests.e2e.portal_lab import PORTAL_PORT, GatewayHost, module_cmd, start_bridge

Event = dict[str, Any]


def unavailable() -> str | None:
    """Why a real agent cannot run here (root, /dev/net/tun, tools), or None."""
    return missing_requirements(("ip", "nft", "ss"))


def _agent_command() -> list[str]:
    script = Path(sys.executable).with_name("firezone-gateway")
    if script.exists():
        return [str(script)]
    return module_cmd("agents.gateway.cli")


class AgentProcess:
    """A gateway agent in its own namespace, connected to the portal at ``socket_path``."""

    def __init__(self, socket_path: Path, external_id: str) -> None:
        self.socket_path = socket_path
        self.external_id = external_id
        self.lab: Lab | None = None  # created by start(), so nothing exists before it
        self.ifname = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.events: list[Event] = []
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, token: str, timeout: float = 30.0) -> None:
        """Namespace, bridge, agent; returns once the agent's data plane is up."""
        lab = self.lab = Lab("fzr")
        ns = lab.namespace("gw")
        # The host addresses are only used for the endpoint the agent advertises.
        start_bridge(lab, GatewayHost(ns, "10.203.0.1", "10.203.0.1"), self.socket_path)
        self.ifname = unique_name("fzrg")
        token_file = lab.tmpfile(f"{self.ifname}.token", token + "\n")
        args = [
            *_agent_command(),
            "--portal-url", f"http://127.0.0.1:{PORTAL_PORT}",
            "--token-file", str(token_file),
            "--external-id", self.external_id,
            "--name", self.external_id,
            "--endpoint", "10.203.0.1:51820",
            "--state-dir", str(lab.tmpdir / f"state-{self.ifname}"),
            "--ifname", self.ifname,
            "--log-json",
        ]  # fmt: skip
        self.process = ns.popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env_with_pythonpath(REPO_ROOT),
            cwd=str(REPO_ROOT),
        )
        assert self.process.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stdout,), name="fz-agent-log", daemon=True
        )
        self._reader.start()
        self.wait(lambda e: e.get("msg") == "data plane up", timeout=timeout)

    def close(self) -> None:
        # Lab.close stops the agent (SIGTERM, then SIGKILL) before deleting the namespace.
        if self.lab is not None:
            self.lab.close()
        if self._reader is not None:
            self._reader.join(timeout=5)

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the log -------------------------------------------------------------------------------
    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            recv = time.time()
            line = raw.decode(errors="replace").rstrip("\n")
            event: Event | None = None
            with contextlib.suppress(ValueError):
                parsed = json.loads(line)
                if isinstance(parsed, dict):
                    event = parsed
                    event["recv"] = recv
            with self._cond:
                self.lines.append(line)
                if event is not None:
                    self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def mark(self) -> int:
        """Index of the next event: pass it to `wait` to see only events from now on."""
        with self._cond:
            return len(self.events)

    def wait(
        self, predicate: Callable[[Event], bool], *, since: int = 0, timeout: float = 5.0
    ) -> Event:
        """The first event at index >= ``since`` matching ``predicate``."""
        deadline = time.monotonic() + timeout
        i = since
        with self._cond:
            while True:
                while i < len(self.events):
                    event = self.events[i]
                    i += 1
                    if predicate(event):
                        return event
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(
                        f"the agent exited with {self.process.returncode}:\n{self.tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching event from the agent")
                self._cond.wait(min(left, 0.5))

    def tail(self, lines: int = 20) -> str:
        with self._cond:
            return "\n".join(self.lines[-lines:])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None
