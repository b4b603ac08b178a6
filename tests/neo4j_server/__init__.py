"""Start and stop the project's Neo4j 5.26 test server (``TestServer.java`` in this folder).

The server is the embedded Neo4j DBMS from Maven Central with its Bolt connector on 127.0.0.1,
auth on, a generated password handed over in the environment (never on the command line, never
printed). ``make test`` builds it (``mvn -q -B package`` writes ``target/classes`` and
``target/classpath.txt``, the jars in the local Maven repository); :func:`ensure_built` builds it
too when the tests run without make.

>>> with Neo4jTestServer(ServerConfig()) as server:     # doctest: +SKIP
...     open_store(server.uri, password=server.password)
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = HERE / "target"
CLASSES = TARGET / "classes"
CLASSPATH_FILE = TARGET / "classpath.txt"
MAIN_CLASS = "org.cellvq.neo4jserver.TestServer"
ADMIN_CLASS = "org.neo4j.cli.AdminTool"
SOURCES = (HERE / "pom.xml", HERE / "src" / "main" / "java" / "org" / "cellvq" / "neo4jserver" / "TestServer.java")


class ServerStartError(RuntimeError):
    """The test server could not be built or started; the message says why and what to do."""


@dataclass
class ServerConfig:
    """How to run the test server.

    ``home``: the DBMS home (kept; a restart on it reopens the data); ``None`` = a temporary
    home deleted at exit. ``port``: Bolt port, 0 = a free one. ``heap``: JVM ``-Xmx``.
    """

    home: Path | None = None
    port: int = 0
    heap: str = "1g"
    startup_timeout: float = 240.0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))


def _jars() -> list[str]:
    return [p for p in CLASSPATH_FILE.read_text().strip().split(os.pathsep) if p]


def is_built() -> bool:
    """The classes and the jars on the classpath exist and are newer than the sources."""
    if not (CLASSPATH_FILE.exists() and (CLASSES / "org").exists()):
        return False
    built = CLASSPATH_FILE.stat().st_mtime
    if any(src.stat().st_mtime > built for src in SOURCES):
        return False
    return all(Path(j).exists() for j in _jars())


def ensure_built() -> None:
    """Build the launcher with Maven unless it is built (needs ``mvn`` and Maven Central)."""
    if is_built():
        return
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise ServerStartError(f"`{tool}` is not on PATH; install Java 17 and Maven to run the live Neo4j suite, "
                                   "or set NEO4J_URI to an external Neo4j 5 server")
    proc = subprocess.run(["mvn", "-q", "-B", "package"], cwd=HERE, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ServerStartError(f"`mvn -q -B package` in {HERE} failed (exit {proc.returncode}); is Maven Central "
                               f"reachable? Its output ends:\n{(proc.stdout + proc.stderr)[-3000:]}")


def classpath() -> str:
    return os.pathsep.join([str(CLASSES), *_jars()])


def artifact_bytes() -> int:
    """Total size of the jars the server runs on (the local Maven repository's copies)."""
    return sum(Path(j).stat().st_size for j in _jars())


class Neo4jTestServer:
    """One launcher process; ``start()`` returns when Bolt accepts connections."""

    user = "neo4j"

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.port: int | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen | None = None
        self._log_dir = Path(tempfile.mkdtemp(prefix="cellvq-neo4j-log-"))

    @property
    def password(self) -> str:
        return self.config.password

    @property
    def uri(self) -> str:
        if self.port is None:
            raise ServerStartError("the Neo4j test server is not started; call start() first")
        return f"bolt://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._log_dir / "server.out"

    def start(self) -> Neo4jTestServer:
        ensure_built()
        cmd = ["java", f"-Xmx{self.config.heap}", "-XX:+UseParallelGC", "-cp", classpath(), MAIN_CLASS]
        if self.config.home is not None:
            cmd += ["--home", str(self.config.home)]
        if self.config.port:
            cmd += ["--port", str(self.config.port)]
        env = {**os.environ, "CELLVQ_NEO4J_PASSWORD": self.password}
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as out:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.port = self._await_ready()
        self.startup_seconds = time.perf_counter() - t0
        return self

    def _await_ready(self) -> int:
        deadline = time.monotonic() + self.config.startup_timeout
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if line.startswith("READY "):
                    return int(line.split()[1])
            if self._proc.poll() is not None:
                raise ServerStartError(f"the Neo4j test server exited with {self._proc.returncode} before READY; "
                                       f"its output ends:\n{self._tail()}")
            time.sleep(0.2)
        self.kill()
        raise ServerStartError(f"the Neo4j test server printed no READY within {self.config.startup_timeout:.0f} s; "
                               f"raise ServerConfig.startup_timeout on a slow machine. Output ends:\n{self._tail()}")

    def _tail(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-3000:].replace(self.password, "***")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 60.0) -> None:
        """Close stdin (the server shuts down cleanly and deletes a temporary home)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.send_signal(signal.SIGTERM)
                self._proc.wait(timeout=timeout)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: the JVM dies at once, as in a crash (a ``home`` keeps the data for a restart)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=30)
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc = None

    def restart(self) -> Neo4jTestServer:
        """Start again on the same home and Bolt port, e.g. after :meth:`kill` (a crash) or :meth:`stop`.

        Needs a ``home`` (a temporary one is gone after a stop); a running server is stopped first.
        """
        if self.config.home is None:
            raise ServerStartError("restart() needs a server with ServerConfig(home=DIR): a temporary home "
                                   "does not outlive its server")
        self.stop()
        if self.port:
            self.config.port = self.port
        return self.start()

    def __enter__(self) -> Neo4jTestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class LiveNeo4j:
    """Where the live tests find Neo4j; ``server`` is ``None`` for an external ``NEO4J_URI``."""

    uri: str
    user: str
    password: str | None
    server: Neo4jTestServer | None = None

    @classmethod
    def from_env(cls) -> LiveNeo4j:
        return cls(uri=os.environ["NEO4J_URI"], user=os.environ.get("NEO4J_USER", "neo4j"),
                   password=os.environ.get("NEO4J_PASSWORD"))

    def open(self, **kwargs):
        from graphdb import open_store

        return open_store(self.uri, user=self.user, password=self.password, **kwargs)
