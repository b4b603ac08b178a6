"""Run Neo4j's bulk importer on the files :func:`graphdb.write_bulk_import` writes.

``neo4j-admin database import full`` builds a new database from CSV files while the server is
stopped; it is the fast road for a large run (an online ``UNWIND`` write is the road for a live
server). :func:`import_full` runs that very tool -- ``org.neo4j.cli.AdminTool`` -- from Neo4j's
own Maven artifacts (``org.neo4j:neo4j`` brings ``neo4j-command-line`` and ``neo4j-import-tool``)
on a Java 17 JVM, into ``<home>/data/databases/<database>``: the layout of a Neo4j home, and of
the embedded DBMS of ``tests/neo4j_server`` started with ``--home <home>``.

The jars are found in this order: ``AdminConfig.classpath``, the environment variable
``CELLVQ_NEO4J_CLASSPATH`` (a classpath, or a file holding one), then the project's launcher
build ``tests/neo4j_server/target/classpath.txt`` (``mvn -q -B package`` there, or ``make test``).
On a machine with a Neo4j installation, run the ``import.sh`` written beside the CSV files instead.

>>> files = write_bulk_import(tables, "bulk/")                              # doctest: +SKIP
>>> import_full(files, AdminConfig(home=Path("neo4j-home")))                # doctest: +SKIP
ImportResult(database='neo4j', nodes=2868, relationships=28430, ...)

The database must not be running while it is imported (the tool refuses a store in use), and
an existing database of that name is replaced (``overwrite=True``). After the import start the
server and create the constraints (``after_import.cypher``; ``open_store`` does it too).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .bulk_import import BulkImport, check_database_name
from .errors import GraphDBError

__all__ = ["AdminConfig", "ImportResult", "Neo4jAdminError", "find_classpath", "find_java", "import_args",
           "import_full", "import_phases"]

ADMIN_CLASS = "org.neo4j.cli.AdminTool"
CLASSPATH_ENV = "CELLVQ_NEO4J_CLASSPATH"
PROJECT_CLASSPATH = Path(__file__).resolve().parents[1] / "tests" / "neo4j_server" / "target" / "classpath.txt"
_BUILD_HINT = (f"build Neo4j's jars with `mvn -q -B package` in tests/neo4j_server (or `make test`), or set "
               f"{CLASSPATH_ENV} to a classpath holding org.neo4j:neo4j 5.26 and its dependencies")
# lines of the tool's output worth echoing as progress (its dotted bars are not)
_PHASE = re.compile(r"^\(\d/\d\)|COMPLETED in|^IMPORT (DONE|FAILED)")


class Neo4jAdminError(GraphDBError):
    """neo4j-admin could not be launched or the import failed; the message says why and the fix."""


@dataclass
class AdminConfig:
    """Where and how to import.

    ``home``: the Neo4j home (``NEO4J_HOME``); the database lands in ``home/data/databases``.
    ``database``: its name (``neo4j`` = the default database a fresh DBMS opens).
    ``classpath`` / ``java``: the jars and the Java 17+ executable (found when ``None``).
    ``heap``: JVM ``-Xmx``; ``max_off_heap_memory``: the importer's own cache (its default is
    90 % of the machine's memory, too greedy on a shared machine); ``threads``: ``None`` = cores.
    ``overwrite``: replace an existing database of that name. ``progress``: echo the phases.
    """

    home: Path
    database: str = "neo4j"
    classpath: str | None = None
    java: str | None = None
    heap: str = "1g"
    max_off_heap_memory: str = "2g"
    threads: int | None = None
    overwrite: bool = True
    progress: bool = False
    timeout: float = 3600.0
    extra_args: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class ImportResult:
    """What the tool reported: counts, its own time and the process's wall time (seconds)."""

    database: str
    home: Path
    nodes: int
    relationships: int
    properties: int
    tool_seconds: float
    wall_seconds: float
    log_file: Path
    report_file: Path

    @property
    def rows(self) -> int:
        """Nodes plus relationships: the rows of the CSV files."""
        return self.nodes + self.relationships

    @property
    def rows_per_second(self) -> float:
        """Rows per second of the tool's own import time (JVM start-up excluded)."""
        return self.rows / max(self.tool_seconds, 1e-9)


def find_java(explicit: str | None = None) -> str:
    """The ``java`` to run: ``explicit``, else ``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    candidates = [explicit] if explicit else []
    if not explicit and os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if not explicit:
        candidates.append("java")
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    raise Neo4jAdminError(f"no Java executable found (tried {', '.join(candidates)}); install Java 17 or newer "
                          "and put `java` on PATH, set JAVA_HOME, or pass AdminConfig(java=...)")


def find_classpath(explicit: str | None = None) -> str:
    """The classpath holding Neo4j's admin tool (see the module docstring for the search order)."""
    source, value = "AdminConfig.classpath", explicit
    if value is None and os.environ.get(CLASSPATH_ENV):
        source, value = CLASSPATH_ENV, os.environ[CLASSPATH_ENV]
    if value is None:
        if not PROJECT_CLASSPATH.exists():
            raise Neo4jAdminError(f"no classpath for neo4j-admin: {PROJECT_CLASSPATH} does not exist; {_BUILD_HINT}")
        source, value = str(PROJECT_CLASSPATH), str(PROJECT_CLASSPATH)
    if os.pathsep not in value and value.endswith(".txt"):
        path = Path(value)
        if not path.exists():
            raise Neo4jAdminError(f"{source} names {path}, which does not exist; {_BUILD_HINT}")
        value = path.read_text().strip()
    jars = [p for p in value.split(os.pathsep) if p]
    missing = [j for j in jars if not Path(j).exists()]
    if not jars or missing:
        raise Neo4jAdminError(f"the classpath from {source} lists {len(missing)} missing jar(s) (e.g. "
                              f"{missing[:1] or ['<none>']}); {_BUILD_HINT}")
    if not any("neo4j-import-tool" in Path(j).name for j in jars):
        raise Neo4jAdminError(f"the classpath from {source} holds no neo4j-import-tool jar; {_BUILD_HINT}")
    return os.pathsep.join(jars)


def _files(bulk: BulkImport | str | Path) -> tuple[list[Path], list[Path]]:
    if isinstance(bulk, BulkImport):
        return list(bulk.node_files.values()), list(bulk.rel_files.values())
    directory = Path(bulk)
    nodes, rels = sorted(directory.glob("nodes_*.csv")), sorted(directory.glob("rels_*.csv"))
    if not nodes:
        raise Neo4jAdminError(f"{directory} holds no nodes_*.csv; write the files with graphdb.write_bulk_import first")
    return nodes, rels


def import_args(bulk: BulkImport | str | Path, config: AdminConfig, report_file: Path) -> list[str]:
    """The ``database import full`` arguments for ``bulk`` (a :class:`BulkImport` or its directory)."""
    nodes, rels = _files(bulk)
    args = ["database", "import", "full", config.database, f"--overwrite-destination={str(config.overwrite).lower()}",
            "--id-type=string", f"--report-file={report_file}", f"--max-off-heap-memory={config.max_off_heap_memory}",
            "--verbose"]
    if config.threads:
        args.append(f"--threads={int(config.threads)}")
    args += [f"--nodes={p}" for p in nodes]
    args += [f"--relationships={p}" for p in rels]
    return [*args, *config.extra_args]


def import_full(bulk: BulkImport | str | Path, config: AdminConfig) -> ImportResult:
    """Run ``neo4j-admin database import full`` on ``bulk`` into ``config.home``; raise on failure."""
    check_database_name(config.database)
    java, classpath = find_java(config.java), find_classpath(config.classpath)
    home = Path(config.home).expanduser().resolve()
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file, report_file = logs / f"import-{config.database}.out", logs / f"import-{config.database}.report"
    cmd = [java, f"-Xmx{config.heap}", "-cp", classpath, ADMIN_CLASS, *import_args(bulk, config, report_file)]
    env = {**os.environ, "NEO4J_HOME": str(home), "NEO4J_CONF": str(home / "conf")}
    t0 = time.perf_counter()
    code = _run(cmd, env, log_file, config)
    wall = time.perf_counter() - t0
    output = log_file.read_text(errors="replace")
    done = re.search(r"IMPORT DONE in ([^.\n]*)", output)
    if code != 0 or done is None:
        removed = _remove_failed_store(output, home, config.database)
        raise Neo4jAdminError(
            f"neo4j-admin database import full {config.database} failed (exit {code}): {_reason(output)}. Is the "
            f"database stopped, and are the files those write_bulk_import wrote? {removed}Full output: {log_file}. "
            f"Output ends:\n{_tail(output)}")
    return ImportResult(
        database=config.database, home=home, nodes=_count(output, "nodes"),
        relationships=_count(output, "relationships"), properties=_count(output, "properties"),
        tool_seconds=_duration(done.group(1)), wall_seconds=wall, log_file=log_file, report_file=report_file)


def _run(cmd: list[str], env: dict[str, str], log_file: Path, config: AdminConfig) -> int:
    with open(log_file, "w") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                cwd=str(log_file.parent))
        deadline = time.monotonic() + config.timeout
        for line in proc.stdout:
            out.write(line)
            if config.progress and _PHASE.search(line):
                print(f"neo4j-admin: {line.strip()}", file=sys.stderr, flush=True)
            if time.monotonic() > deadline:
                proc.kill()
                out.write(f"\n[cellvq] killed after AdminConfig.timeout={config.timeout:.0f} s\n")
                break
        return proc.wait()


def _remove_failed_store(output: str, home: Path, database: str) -> str:
    """Delete the store files of an import the tool itself calls unusable (nothing half-done is left).

    Only when the tool says it left them: a refused import (database in use, already there) has
    touched nothing, and nothing is deleted then.
    """
    if "Import failed. The store files in" not in output:
        return ""
    for sub in ("databases", "transactions"):
        shutil.rmtree(home / "data" / sub / database, ignore_errors=True)
    return f"The half-imported store files of {database!r} were removed. "


def _reason(output: str) -> str:
    """The tool's own reason: the innermost ``original error`` / ``Caused by``, else its last message line."""
    original = re.findall(r"original error: (.+)", output)
    if original:
        return original[-1].strip()
    causes = re.findall(r"^Caused by: [\w.$]+: (.+)$", output, re.MULTILINE)
    if causes:
        return causes[-1].strip()
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and not ln.startswith(("\tat ", "...."))]
    useful = [ln for ln in lines if not ln.startswith(("Run with '--verbose'", "org.neo4j.cli.CommandFailed"))]
    return useful[-1] if useful else "no output"


def _tail(output: str, lines: int = 15) -> str:
    kept = [ln for ln in output.splitlines()
            if ln.strip() and not ln.startswith(("....", "\tat ", "-....")) and not ln.strip().startswith("... ")]
    return "\n".join(kept[-lines:])


def import_phases(log_file: str | Path) -> dict[str, float]:
    """Seconds of each phase of an import (``{'Nodes': 0.94, 'Relationships': 1.08, ...}``), in order,
    from the tool's output file.

    Neo4j 5.26 writes ``<Phase>, started <timestamp>``, progress dots, then ``Done in <duration>``;
    a warning printed without a newline (the heap-size advice) can run into the first phase's name,
    so a leading ``... 1.000GiB`` is cut off. Older releases wrote ``<phase> COMPLETED in <duration>``;
    both are read. A phase reported twice adds up."""
    phases: dict[str, float] = {}
    current = None
    for line in Path(log_file).read_text(errors="replace").splitlines():
        started = re.search(r"([^,]*), started \d{4}-\d\d-\d\d", line)
        done = re.match(r"\s*Done in (.+)$", line)
        completed = re.match(r"\s*(\S.*?) COMPLETED in (.+)$", line)
        if started:
            current = re.sub(r"^.*\d[KMGT]i?B", "", started.group(1)).strip()
        elif done and current:
            phases[current] = phases.get(current, 0.0) + _duration(done.group(1))
            current = None
        elif completed:
            name = completed.group(1).strip()
            phases[name] = phases.get(name, 0.0) + _duration(completed.group(2))
    return phases


def _count(output: str, what: str) -> int:
    found = re.search(rf"^\s*(\d+) {what}$", output, re.MULTILINE)
    return int(found.group(1)) if found else 0


def _duration(text: str) -> float:
    """``'1m 8s 11ms'`` -> 68.011 (the tool's own format)."""
    scale = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    return sum(float(n) * scale[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d)\b", text))
