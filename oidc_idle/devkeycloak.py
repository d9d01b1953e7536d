"""A real Keycloak on loopback without Docker: ``oidc-idle keycloak start|stop|status``.

The distribution (``org.keycloak:keycloak-quarkus-dist``, a pinned 26.x zip) is
fetched from Maven Central with ``mvn dependency:copy -Dtransitive=false`` into
a cache outside the repository (``$OIDC_IDLE_CACHE``, default
``~/.cache/oidc-idle``) and reused. Each running instance gets its own home
(own ``data/``, ``conf/`` and ``bin/``; the large ``lib/`` shared), runs
``kc.sh start-dev`` with an in-memory database on 127.0.0.1, imports the realm
files given, and is ready when the management port's ``/health/ready`` says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from .errors import ServiceError

KEYCLOAK_VERSION = "26.7.3"
ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:zip"
JDK_CANDIDATES = ("/usr/lib/jvm/temurin-25-jdk-amd64", "/usr/lib/jvm/java-21-openjdk-amd64",
                  "/usr/lib/jvm/java-17-openjdk-amd64")
SHARED = ("lib", "themes", "providers")


def cache_dir() -> Path:
    return Path(os.environ.get("OIDC_IDLE_CACHE", Path.home() / ".cache" / "oidc-idle"))


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)', out.stderr + out.stdout)
    return int(m.group(1)) if m else None


def find_java_home() -> str:
    """A JDK for Keycloak 26: prefer 25, accept 21 or 17 (JAVA_HOME wins if good)."""
    candidates = [os.environ.get("JAVA_HOME", ""), *JDK_CANDIDATES]
    which = shutil.which("java")
    if which:
        candidates.append(str(Path(os.path.realpath(which)).parent.parent))
    for home in candidates:
        java = Path(home) / "bin" / "java"
        if home and java.exists():
            major = _java_major(str(java))
            if major is not None and major >= 17:
                return home
    raise ServiceError("no Java 17+ found for Keycloak: install a JDK (e.g. "
                       "apt-get install openjdk-17-jdk-headless) or set JAVA_HOME")


def ensure_distribution() -> Path:
    """The unpacked Keycloak distribution, fetched once with Maven."""
    root = cache_dir()
    dist = root / f"keycloak-{KEYCLOAK_VERSION}"
    if (dist / "bin" / "kc.sh").exists():
        return dist
    zip_path = root / "dl" / f"keycloak-quarkus-dist-{KEYCLOAK_VERSION}.zip"
    if not zip_path.exists():
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceError("Maven (mvn) is needed once to fetch Keycloak from Maven "
                               "Central: apt-get install maven")
        (root / "dl").mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={ARTIFACT}",
             f"-DoutputDirectory={root / 'dl'}", "-Dtransitive=false"],
            capture_output=True, text=True, cwd=root, timeout=1800)
        if proc.returncode != 0 or not zip_path.exists():
            raise ServiceError(f"mvn could not fetch {ARTIFACT}:\n{proc.stdout[-2000:]}"
                               f"{proc.stderr[-2000:]}")
    tmp = root / f".unpack-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(tmp)
    unpacked = tmp / f"keycloak-{KEYCLOAK_VERSION}"
    for script in (unpacked / "bin").glob("*.sh"):
        script.chmod(0o755)
    try:
        unpacked.rename(dist)
    except OSError:
        if not (dist / "bin" / "kc.sh").exists():  # somebody else won the race: fine
            raise
    shutil.rmtree(tmp, ignore_errors=True)
    return dist


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class KeycloakInstance:
    name: str
    pid: int
    http_port: int
    management_port: int
    home: str
    log: str
    admin_user: str
    admin_password: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        try:  # a zombie child of ours is not alive
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            return pid == 0
        except ChildProcessError:
            return True

    def ready(self) -> bool:
        try:
            r = requests.get(f"http://127.0.0.1:{self.management_port}/health/ready", timeout=2)
            return r.status_code == 200
        except requests.RequestException:
            return False


def _run_dir(name: str) -> Path:
    return cache_dir() / "run" / name


def _state_file(name: str) -> Path:
    return _run_dir(name) / "instance.json"


def load(name: str = "default") -> KeycloakInstance | None:
    path = _state_file(name)
    if not path.exists():
        return None
    try:
        return KeycloakInstance(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def start(*, name: str = "default", http_port: int = 8080, management_port: int = 9000,
          realm_files: Iterable[Path] = (), admin_user: str = "admin",
          admin_password: str = "admin", timeout_s: float = 300.0) -> KeycloakInstance:
    """Start Keycloak and wait until it is ready; raise ServiceError with the reason."""
    existing = load(name)
    if existing is not None and existing.alive():
        raise ServiceError(f"Keycloak '{name}' already runs (pid {existing.pid}) at "
                           f"{existing.base_url}; stop it first")
    for port in (http_port, management_port):
        if not port_free(port):
            raise ServiceError(f"port {port} on 127.0.0.1 is taken; choose another "
                               "(--port / --management-port) or stop what uses it")
    java_home = find_java_home()
    dist = ensure_distribution()
    run = _run_dir(name)
    home = run / "home"
    shutil.rmtree(run, ignore_errors=True)
    (home / "data" / "import").mkdir(parents=True)
    shutil.copytree(dist / "bin", home / "bin", symlinks=True)
    shutil.copytree(dist / "conf", home / "conf")
    for sub in SHARED:
        (home / sub).symlink_to(dist / sub)
    for f in realm_files:
        shutil.copy(f, home / "data" / "import" / Path(f).name)
    log_path = run / "keycloak.log"
    env = {**os.environ, "JAVA_HOME": java_home,
           "KC_BOOTSTRAP_ADMIN_USERNAME": admin_user,
           "KC_BOOTSTRAP_ADMIN_PASSWORD": admin_password}
    env.pop("JAVA_OPTS", None)
    cmd = [str(home / "bin" / "kc.sh"), "start-dev", "--import-realm", "--db=dev-mem",
           "--http-host=127.0.0.1", f"--http-port={http_port}",
           f"--http-management-port={management_port}", "--health-enabled=true",
           "--hostname-strict=false", "--log-console-output=default"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    inst = KeycloakInstance(name, proc.pid, http_port, management_port, str(home),
                            str(log_path), admin_user, admin_password)
    _state_file(name).write_text(json.dumps(asdict(inst)))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"Keycloak exited with {proc.returncode} while starting; "
                               f"last log lines:\n{_tail(log_path)}")
        if inst.ready():
            return inst
        time.sleep(0.5)
    stop(name)
    raise ServiceError(f"Keycloak was not ready after {timeout_s:.0f} s; last log lines:\n"
                       f"{_tail(log_path)}")


def stop(name: str = "default", timeout_s: float = 30.0) -> bool:
    """Stop the named instance; True if one was running."""
    inst = load(name)
    if inst is None or not inst.alive():
        if inst is not None:
            _state_file(name).unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(inst.pid, signal.SIGTERM)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and inst.alive():
        time.sleep(0.2)
    if inst.alive():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(inst.pid, signal.SIGKILL)
    _state_file(name).unlink(missing_ok=True)
    return True


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
