"""A real PostgreSQL server for tests, private to one test session.

Lifecycle: ``PostgresServer()`` finds the binaries of Debian's ``postgresql`` package,
``start()`` runs ``initdb`` in a fresh temporary directory and starts the server on a free
loopback port (unix socket inside that directory, nothing on other interfaces), and
``create_database(name)`` hands out a SQLAlchemy URL of a fresh, empty database. ``stop()``
stops the server and removes the directory; it runs at interpreter exit too (``atexit``), and a
small watchdog process stops the server if the test process dies without running either (a
SIGKILL or an unhandled SIGTERM), so no ``postgres`` outlives the session.

The server trades durability for speed (``fsync``, ``synchronous_commit`` and
``full_page_writes`` off): its data lives exactly as long as the session.
"""

from __future__ import annotations

import atexit
import glob
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresBinaries", "PostgresServer", "PostgresUnavailable", "find_binaries"]

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"  # the database role the URLs connect as (trust auth: no password)
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_INSTALL_HINT = "install it with `apt-get install -y postgresql` (CI's .ci/run does)"
# what a lost race for the free port looks like in the server log: pick another port and retry
_PORT_TAKEN = re.compile(r"could not bind|Address already in use")
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries are missing, or the server did not start."""


@dataclass(frozen=True)
class PostgresBinaries:
    bin_dir: Path  # holds initdb, pg_ctl, postgres (one PostgreSQL version)

    @property
    def initdb(self) -> str:
        return str(self.bin_dir / "initdb")

    @property
    def pg_ctl(self) -> str:
        return str(self.bin_dir / "pg_ctl")


def find_binaries() -> PostgresBinaries:
    """The bin directory of one PostgreSQL install: ``pg_ctl`` on PATH, else the newest
    ``/usr/lib/postgresql/<version>/bin`` (Debian keeps the server binaries off PATH), else
    the binaries in the ``pgserver`` wheel."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        # a PATH entry may be a symlink (/usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/...):
        # initdb and postgres of the same version live next to its target
        candidates.append(Path(on_path).resolve().parent)
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: _version_key(Path(p).parent.name), reverse=True)
    candidates.extend(Path(p) for p in versions)
    # without a system install: the server binaries pip's `pgserver` wheel ships (a dev
    # dependency), so the README's test command needs nothing but pip
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    for bin_dir in candidates:
        if all(os.access(bin_dir / b, os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return PostgresBinaries(bin_dir)
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under "
        f"/usr/lib/postgresql/*/bin; {_INSTALL_HINT}")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)) or (0,)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> str | None:
    """The unprivileged user to run the server as, or None to run it as ourselves.

    PostgreSQL refuses to run as root; Debian's package creates a ``postgres`` user.
    """
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable("running as root and neither a 'postgres' nor a 'nobody' user "
                              f"exists to run PostgreSQL as; {_INSTALL_HINT}")


class PostgresServer:
    """One PostgreSQL server in a temporary directory; see the module docstring.

    ``start()`` and ``stop()`` are each meant to be called once; ``stop()`` is idempotent and
    safe after a failed ``start()``.
    """

    def __init__(self, binaries: PostgresBinaries | None = None) -> None:
        self.binaries = binaries or find_binaries()
        self.user = _server_user()
        self.host = "127.0.0.1"
        self.port = 0
        self.root: Path | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._databases = 0

    # paths inside the temporary directory
    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "server not started"
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None, "server not started"
        return self.root / "socket"

    @property
    def log_file(self) -> Path:
        assert self.root is not None, "server not started"
        return self.root / "server.log"

    def start(self) -> PostgresServer:
        atexit.register(self.stop)
        began = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="mtp-pg-"))
        try:
            self.socket_dir.mkdir()
            self.log_file.touch()
            if self.user is not None:
                self._chown_tree(self.root, self.user)
            self._run([self.binaries.initdb, "-D", str(self.data_dir), "--username", SUPERUSER,
                       "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
                      timeout_s=START_TIMEOUT_S, what="initdb")
            (self.data_dir / "pg_hba.conf").write_text(
                "# trust: a throwaway server reachable only from this host\n"
                "local all all trust\n"
                "host all all 127.0.0.1/32 trust\n")
            self._start_server(began)
            self._start_watchdog()
        except BaseException:
            self.stop()
            raise
        logger.info("PostgreSQL started on %s:%d in %.1f s (%s)", self.host, self.port,
                    time.monotonic() - began, self.root)
        return self

    def _start_server(self, began: float) -> None:
        for attempt in range(3):
            self.port = _free_port()
            self._write_config()
            offset = self.log_file.stat().st_size
            left = max(5.0, START_TIMEOUT_S - (time.monotonic() - began))
            proc = self._run([self.binaries.pg_ctl, "start", "-D", str(self.data_dir), "-l",
                              str(self.log_file), "-w", "-t", str(int(left))],
                             timeout_s=left + 10, what="pg_ctl start", check=False)
            if proc.returncode == 0 and self._wait_ready(began + START_TIMEOUT_S):
                return
            log = self.log_file.read_text(errors="replace")[offset:]
            if proc.returncode != 0 and _PORT_TAKEN.search(log) and attempt < 2:
                logger.info("port %d taken before PostgreSQL bound it; retrying", self.port)
                continue
            raise PostgresUnavailable(
                f"PostgreSQL did not come up on {self.host}:{self.port} (waited at most "
                f"{START_TIMEOUT_S:g} s; pg_ctl exit {proc.returncode}: "
                f"{(proc.stdout + proc.stderr).strip()}); server log tail:\n"
                + self.log_tail())

    def _write_config(self) -> None:
        # postgresql.auto.conf is read last and rewritten whole, so a retry on another port
        # replaces the previous settings instead of stacking them
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "200",
            "shared_buffers": "'32MB'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        (self.data_dir / "postgresql.auto.conf").write_text(
            "".join(f"{k} = {v}\n" for k, v in settings.items()))

    def _wait_ready(self, deadline: float) -> bool:
        """Poll until a real login succeeds, or until the deadline."""
        import psycopg

        while True:
            try:
                with psycopg.connect(host=self.host, port=self.port, user=SUPERUSER,
                                     dbname="postgres", connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    return False
            time.sleep(0.1)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh, empty database and return its SQLAlchemy URL.

        ``name`` defaults to ``test_<n>``; a name already taken raises.
        """
        import psycopg
        from psycopg import sql

        self._databases += 1
        name = name or f"test_{self._databases}"
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r}: use at most 63 of [a-z0-9_], not "
                             "starting with a digit")
        # template0 is never connected to, so concurrent creations cannot collide on it, and it
        # holds nothing a test could have added to template1
        with psycopg.connect(host=self.host, port=self.port, user=SUPERUSER, dbname="postgres",
                             autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
                sql.Identifier(name)))
        return self.url(name)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except (OSError, AssertionError):
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:]) or "(server log empty)"

    def stop(self) -> None:
        """Stop the server (fast, then immediate, then SIGKILL) and remove its directory."""
        atexit.unregister(self.stop)
        if self.root is None:
            return
        root, self.root = self.root, None
        try:
            self._stop_watchdog()
            _stop_server(self.binaries.pg_ctl, root / "data", self.user, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _start_watchdog(self) -> None:
        assert self.root is not None
        cmd = [sys.executable, __file__, "--watchdog", str(os.getpid()), self.binaries.pg_ctl,
               str(self.root), self.user or ""]
        # own session: a Ctrl-C aimed at pytest leaves the watchdog alone; stop() ends it
        self._watchdog = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, cwd=self.root,
                                          start_new_session=True)

    def _stop_watchdog(self) -> None:
        if self._watchdog is None:
            return
        self._watchdog.terminate()
        try:
            self._watchdog.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._watchdog.kill()
            self._watchdog.wait(timeout=5)
        self._watchdog = None

    def _run(self, cmd: list[str], timeout_s: float, what: str,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.root is not None
        proc = _run_as(self.user, cmd, self.root, timeout_s, what)
        if check and proc.returncode != 0:
            raise PostgresUnavailable(
                f"{what} failed (exit {proc.returncode}): {(proc.stdout + proc.stderr).strip()}")
        return proc

    @staticmethod
    def _chown_tree(root: Path, user: str) -> None:
        entry = pwd.getpwnam(user)
        for path in [root, *root.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)


def _run_as(user: str | None, cmd: list[str], cwd: Path, timeout_s: float,
            what: str) -> subprocess.CompletedProcess[str]:
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    try:
        # cwd inside the temp dir: the server user may not be able to read the caller's cwd,
        # and initdb and postgres refuse to run where they cannot. start_new_session: a Ctrl-C
        # to the terminal's process group must not reach the server (which pg_ctl starts in
        # this session) before the fixture's teardown stops it in order
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    except subprocess.TimeoutExpired as err:
        raise PostgresUnavailable(f"{what} did not finish within {timeout_s:g} s") from err


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone (pg_ctl's postmaster is not our child, but be safe)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _stop_server(pg_ctl: str, data_dir: Path, user: str | None, cwd: Path) -> None:
    pid = _postmaster_pid(data_dir)
    if pid is None or not _alive(pid):
        return
    for mode in ("fast", "immediate"):
        try:
            proc = _run_as(user, [pg_ctl, "stop", "-D", str(data_dir), "-m", mode, "-w", "-t",
                                  str(int(STOP_TIMEOUT_S))], cwd, STOP_TIMEOUT_S + 5,
                           f"pg_ctl stop -m {mode}")
        except PostgresUnavailable as err:
            logger.warning("%s", err)
            continue
        if proc.returncode == 0 and not _alive(pid):
            return
        logger.warning("pg_ctl stop -m %s failed (exit %d): %s", mode, proc.returncode,
                       (proc.stdout + proc.stderr).strip())
    # the last resort: the postmaster's children exit by themselves once it is gone
    logger.warning("killing PostgreSQL postmaster %d", pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _watchdog(parent: int, pg_ctl: str, root: str, user: str) -> None:
    """Stop the server and remove its directory once ``parent`` is gone.

    ``stop()`` terminates this process first, so it only acts when the test process died
    without cleaning up.
    """
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while os.getppid() == parent:
        time.sleep(0.5)
    _stop_server(pg_ctl, Path(root) / "data", user or None, Path(root))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__" and sys.argv[1:2] == ["--watchdog"]:
    _watchdog(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
