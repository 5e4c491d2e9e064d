"""Real PostgreSQL and MariaDB servers for tests: started once per session as processes on
127.0.0.1 on a free port in a temporary folder, and stopped afterwards.

PostgreSQL refuses to run as root, so as root both servers run as ``nobody`` (their folder
is given to that user); as anyone else they run as that user. When a server's binaries are
absent (a user's machine without the Debian packages) ``start_*`` raises ``Unavailable``
with the reason, and the fixtures skip.

Each server has a privileged login with a password (the superuser ``sqlwright`` on
PostgreSQL, a ``sqlwright`` account with ALL PRIVILEGES on MariaDB), so tests can check
that read-only enforcement holds without a read-only role, and that a password never leaks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "s3cr3t-Planted-pw"  # tests grep run folders for it
USER = "sqlwright"
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class Unavailable(Exception):
    """The server cannot be started here; the message says why (the skip reason)."""


@dataclass
class Server:
    kind: str  # postgresql | mariadb
    host: str
    port: int
    folder: Path
    proc: subprocess.Popen
    socket_path: str = ""

    def url(self, database: str, password: bool = True) -> str:
        auth = f"{USER}:{PASSWORD}" if password else USER
        return f"{self.kind}://{auth}@{self.host}:{self.port}/{database}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if self.kind == "mariadb" else signal.SIGINT)  # PG: fast shutdown
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user() -> dict:
    """subprocess arguments that drop root to ``nobody`` (PostgreSQL will not run as root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": 65534, "group": 65534, "extra_groups": []}


def _folder(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))  # under /tmp, so nobody can reach it
    if os.geteuid() == 0:
        os.chown(d, 65534, 65534)
    return d


def _run(cmd: list[str], what: str, **kw) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **_as_user(), **kw)
    if r.returncode != 0:
        raise Unavailable(f"{what} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")


def _wait_port(proc: subprocess.Popen, port: int, log: Path, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Unavailable(f"{what} exited: {log.read_text(errors='replace')[-500:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    proc.kill()
    raise Unavailable(f"{what} did not listen on 127.0.0.1:{port} within {seconds:g} s")


# -- PostgreSQL ----------------------------------------------------------------------------
def pg_binary(name: str) -> str | None:
    for d in PG_BIN_DIRS:
        if (d / name).is_file():
            return str(d / name)
    return shutil.which(name)


def start_postgres() -> Server:
    initdb, postgres = pg_binary("initdb"), pg_binary("postgres")
    if not (initdb and postgres):
        raise Unavailable("PostgreSQL binaries not found (install: apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable("psycopg is not installed (pip install 'sqlwright[postgres]')") from None
    folder = _folder("sqlwright-pg-")
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        os.chown(pwfile, 65534, 65534)
    data = folder / "data"
    _run([initdb, "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth-local=trust",
          "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"], "initdb")  # fmt: skip
    port = free_port()
    log = folder / "log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [postgres, "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={folder}", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
            stdout=out, stderr=subprocess.STDOUT, **_as_user())  # fmt: skip
    server = Server("postgresql", "127.0.0.1", port, folder, proc, str(folder))
    try:
        _wait_port(proc, port, log, "postgres")
        _wait_pg_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_pg_ready(server: Server, seconds: float = 30) -> None:
    import psycopg

    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(server.url("postgres"), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def pg_admin(server: Server, database: str = "postgres"):
    """An autocommit superuser connection (for setting up and inspecting test databases)."""
    import psycopg

    return psycopg.connect(server.url(database), autocommit=True)


# -- MariaDB -------------------------------------------------------------------------------
def start_mariadb() -> Server:
    mariadbd = shutil.which("mariadbd") or shutil.which("mysqld", path="/usr/sbin:/usr/local/sbin:" + os.environ.get("PATH", ""))
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if not (mariadbd and install):
        raise Unavailable("MariaDB binaries not found (install: apt-get install mariadb-server)")
    try:
        import pymysql
    except ImportError:
        raise Unavailable("PyMySQL is not installed (pip install 'sqlwright[mysql]')") from None
    folder = _folder("sqlwright-maria-")
    data = folder / "data"
    sock = str(folder / "sock")
    _run([install, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
          "--skip-test-db", "--skip-name-resolve"], "mariadb-install-db")  # fmt: skip
    port = free_port()
    log = folder / "log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
             "--bind-address=127.0.0.1", "--skip-name-resolve", f"--pid-file={folder / 'pid'}",
             "--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=0", "--skip-log-bin",
             "--max-connections=300", f"--tmpdir={folder}", "--lower-case-table-names=1"],
            stdout=out, stderr=subprocess.STDOUT, **_as_user())  # fmt: skip
    server = Server("mariadb", "127.0.0.1", port, folder, proc, sock)
    try:
        _wait_port(proc, port, log, "mariadbd")
        root = pymysql.connect(unix_socket=sock, user="root", autocommit=True)
        with root.cursor() as cur:
            cur.execute(f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%' WITH GRANT OPTION")
        root.close()
    except BaseException:
        server.stop()
        raise
    return server


def maria_admin(server: Server, database: str | None = None):
    """An autocommit privileged connection (set-up and inspection)."""
    import pymysql

    return pymysql.connect(host=server.host, port=server.port, user=USER, password=PASSWORD, database=database,
                           autocommit=True)
