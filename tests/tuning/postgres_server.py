"""A throw-away PostgreSQL server on 127.0.0.1 for the multi-worker tests.

``initdb`` into a temporary directory, ``pg_ctl start`` on a free port with the Unix socket in that directory,
``createdb``, and ``pg_ctl stop`` at the end. PostgreSQL refuses to run as root, so as root every command
runs as the ``postgres`` user (``runuser -u postgres --``) in a directory it owns. CI installs the server with
``apt-get install -y postgresql`` (Debian: binaries in ``/usr/lib/postgresql/<version>/bin``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

APT_HINT = "apt-get install -y postgresql"


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or ``None``."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent  # /usr/local/bin may hold links to some of the tools only
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def missing_reason() -> str | None:
    """Why no server can be started here, or ``None``."""
    if find_bin_dir() is None:
        return f"PostgreSQL server binaries (initdb, pg_ctl) are not installed: {APT_HINT}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root without runuser to switch to the 'postgres' user"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PostgresServer:
    """A running server; :meth:`url` gives a SQLAlchemy URL of one of its databases.

    With ``password_role``, TCP connections need a password (``scram-sha-256``) and that role owns every database;
    :meth:`url` then connects as that role (``password=""`` leaves the password out of the URL).
    """

    port: int
    user: str
    password_role: tuple[str, str] | None = None

    def url(self, database: str, driver: str = "psycopg2", password: str | None = None) -> str:
        """``postgresql+<driver>://...``; ``driver=""`` gives a bare ``postgresql://`` URL."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        if self.password_role is None:
            return f"{scheme}://{self.user}@127.0.0.1:{self.port}/{database}"
        role, secret = self.password_role
        secret = secret if password is None else password
        userinfo = f"{role}:{urllib.parse.quote(secret, safe='')}" if secret else role
        return f"{scheme}://{userinfo}@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def postgres_server(
    databases: tuple[str, ...], password_role: tuple[str, str] | None = None, max_connections: int = 100
) -> Iterator[PostgresServer]:
    """Start a server with ``databases`` created; stop it and delete its files afterwards.

    Args:
        databases: Databases to create.
        password_role: ``(role, password)``: TCP logins need a password (scram-sha-256); the role owns the
            databases. The superuser still logs in without one over the Unix socket (to set things up).
        max_connections: The server's connection limit.
    """
    bin_dir = find_bin_dir()
    assert bin_dir is not None, APT_HINT
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
    root = Path(tempfile.mkdtemp(prefix="mlperf_track_pg_"))
    if as_root:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)

    def run(*args: str) -> None:
        command = [str(bin_dir / args[0]), *args[1:]]
        if as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    data, port = root / "data", _free_port()
    try:
        host_auth = "scram-sha-256" if password_role else "trust"
        run("initdb", "-D", str(data), "--auth-local=trust", f"--auth-host={host_auth}", "-U", user, "--no-sync")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections={max_connections}"
        run("pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "-t", "60", "start")
        try:
            owner: list[str] = []
            if password_role:
                role, secret = password_role
                literal = secret.replace("'", "''")
                run("psql", "-h", str(root), "-p", str(port), "-U", user, "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                    "-c", f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{literal}'")  # fmt: skip
                owner = ["-O", role]
            for database in databases:
                run("createdb", "-h", str(root), "-p", str(port), "-U", user, *owner, database)
            yield PostgresServer(port=port, user=user, password_role=password_role)
        finally:
            run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"{error.cmd} failed: {error.stderr or error.stdout}") from error
    finally:
        shutil.rmtree(root, ignore_errors=True)
