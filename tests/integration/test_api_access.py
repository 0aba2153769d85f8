"""Who may use cped's API, against a real cped.

- UNIX socket: file permission (0660) first; then the peer's uid
  (SO_PEERCRED): root, cped's own, ``allowed_users`` and members of
  ``socket_group`` pass, anyone else gets 403 ``forbidden``.  Every change is
  logged with the uid that made it.  The other users are real processes run
  as ``nobody`` (the system's python3: the project's venv may not be readable
  by them).
- TCP listener (loopback only): TLS and a bearer token, or cped refuses to
  start (exit 2, before detaching); a wrong or missing token is 401
  ``unauthorized``; plain HTTP gets no answer; the token is never logged.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cpe.client import Client, Remote
from cpe.control import cped_command, cped_environment, start_daemon
from cpe.daemon import IDLE_TIMEOUT
from foundation.errors import InvalidInput, PcloudError, Unauthorized, Unavailable
from foundation.paths import Paths, resolve
from tests.conftest import make_home
from tests.integration.conftest import CpedFactory, CpedProcess
from tests.integration.test_pcloudsh_session import pcloudsh_command

pytestmark = pytest.mark.integration

NOBODY, NOGROUP = 65534, 65534
SYSTEM_PYTHON = Path("/usr/bin/python3")

# Run as another user: one request on the socket; prints the status and body as JSON.
PEER_SCRIPT = """
import http.client, json, socket, sys
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sys.argv[1])
connection = Unix("localhost", timeout=5)
try:
    connection.request(sys.argv[2], "/v1" + sys.argv[3], body=sys.argv[4] or None,
                       headers={"Content-Type": "application/json"})
except PermissionError:
    print(json.dumps({"status": "EACCES"}))
else:
    response = connection.getresponse()
    print(json.dumps({"status": response.status, "body": response.read().decode()}))
"""


@dataclass
class PeerAnswer:
    status: int | str
    body: dict[str, object]


def as_other_user(
    paths: Paths, method: str, path: str, body: object = None, *, gid: int = NOGROUP
) -> PeerAnswer:
    if not SYSTEM_PYTHON.exists():
        pytest.skip("no system python3 to run a request as another user")
    data = json.dumps(body) if body is not None else ""
    done = subprocess.run(
        [str(SYSTEM_PYTHON), "-I", "-c", PEER_SCRIPT, str(paths.socket), method, path, data],
        user=NOBODY,
        group=gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    answer = json.loads(done.stdout)
    text = answer.get("body")
    return PeerAnswer(answer["status"], json.loads(text) if text else {})


@pytest.fixture
def reachable_home(pcloud_home: Paths) -> Paths:
    """Let other users reach the socket's directory (the home is the test's own)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run processes as another user")
    home = pcloud_home.runtime_dir.parent
    home.chmod(0o755)
    return pcloud_home


def wait_for_log(cped: CpedProcess, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in cped.log():
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{cped.log()}"
        time.sleep(0.05)


def reload(cped: CpedProcess, config: str) -> None:
    cped.paths.config_file.write_text(config)
    count = cped.log().count("configuration reloaded")
    cped.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5.0
    while cped.log().count("configuration reloaded") == count:
        assert time.monotonic() < deadline, cped.log()
        time.sleep(0.05)


# -- the UNIX socket ---------------------------------------------------------------------


def test_file_permission_keeps_other_users_out(
    reachable_home: Paths, cped_factory: CpedFactory
) -> None:
    cped_factory()
    assert as_other_user(reachable_home, "GET", "/health").status == "EACCES"


def test_a_peer_let_in_by_file_permission_but_not_allowed_gets_403(
    reachable_home: Paths, cped_factory: CpedFactory
) -> None:
    cped = cped_factory()
    # group root can open the socket (0660 root:root), but uid 65534 is not allowed
    answer = as_other_user(reachable_home, "POST", "/assemblies", {"name": "web"}, gid=0)
    assert answer.status == 403 and answer.body["code"] == "forbidden"
    assert "uid 65534" in str(answer.body["message"])
    assert cped.client.list_assemblies() == []
    wait_for_log(cped, "refused uid=65534")


REPO = Path(__file__).resolve().parents[2]


def pcloudsh_as_other_user(paths: Paths, command: str) -> subprocess.CompletedProcess[str]:
    """The one-shot shell run as nobody by the system's python3, from this source tree."""
    if not SYSTEM_PYTHON.exists():
        pytest.skip("no system python3 to run pcloudsh as another user")
    if any(not part.stat().st_mode & 0o001 for part in (REPO, *REPO.parents)):
        pytest.skip("the source tree is not readable by other users")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "PCLOUD_HOME": str(paths.runtime_dir.parent),
    }
    return subprocess.run(
        [str(SYSTEM_PYTHON), "-m", "pcloudsh", command],
        user=NOBODY,
        group=NOGROUP,
        extra_groups=[],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("status", "permission denied on cped's socket"),
        ("start", "permission denied on cped's socket"),
        ("stop", "runs as another user: only that user or root may stop it"),
    ],
)
def test_daemon_commands_of_a_user_cped_does_not_let_in_say_so(
    reachable_home: Paths, cped_factory: CpedFactory, command: str, says: str
) -> None:
    cped = cped_factory()
    done = pcloudsh_as_other_user(reachable_home, command)
    assert (done.returncode, "Traceback" in done.stderr) == (1, False), done.stderr
    assert says in done.stderr
    assert cped.client.health()["pid"] == cped.pid


def test_a_pidfile_other_users_cannot_reach_is_said_so(
    pcloud_home: Paths, cped_factory: CpedFactory
) -> None:
    cped_factory()
    pcloud_home.runtime_dir.chmod(0o700)
    pcloud_home.runtime_dir.parent.chmod(0o755)
    done = pcloudsh_as_other_user(pcloud_home, "stop")
    assert (done.returncode, "Traceback" in done.stderr) == (1, False), done.stderr
    assert f"permission denied on cped's pidfile {pcloud_home.pidfile}" in done.stderr


def test_allowed_users_are_let_in_after_a_reload_and_their_changes_logged(
    reachable_home: Paths, cped_factory: CpedFactory
) -> None:
    cped = cped_factory()
    reload(cped, "[cped]\nallowed_users = nobody\n")
    answer = as_other_user(reachable_home, "POST", "/assemblies", {"name": "web"}, gid=0)
    assert answer.status == 201, answer
    assert [row["name"] for row in cped.client.list_assemblies()] == ["web"]
    wait_for_log(cped, "change by uid=65534 pid=")


def test_members_of_socket_group_are_let_in(
    reachable_home: Paths, cped_factory: CpedFactory
) -> None:
    cped = cped_factory("[cped]\nsocket_group = nogroup\n")
    assert (reachable_home.socket.stat().st_mode & 0o777, reachable_home.socket.stat().st_gid) == (
        0o660,
        NOGROUP,
    )
    answer = as_other_user(reachable_home, "DELETE", "/assemblies/nothing")
    assert answer.status == 404 and answer.body["code"] == "not_found"
    wait_for_log(cped, "change by uid=65534")


def test_a_change_by_root_is_logged_with_its_uid(cped: CpedProcess) -> None:
    cped.client.create_assembly({"name": "web"})
    wait_for_log(cped, "change by uid=0 pid=")


# -- the TLS listener ----------------------------------------------------------------------


@dataclass
class Tls:
    ca_file: Path
    certificate: Path
    key: Path
    token_file: Path
    token: str
    port: int

    def config(self, *skip: str) -> str:
        settings = {
            "listen": f"127.0.0.1:{self.port}",
            "tls_certificate": self.certificate,
            "tls_key": self.key,
            "token_file": self.token_file,
        }
        lines = [f"{k} = {v}" for k, v in settings.items() if k not in skip]
        return "[cped]\n" + "\n".join(lines) + "\n"

    def client(self, token: str | None = None) -> Client:
        remote = Remote.from_url(
            f"https://127.0.0.1:{self.port}", token or self.token, str(self.ca_file)
        )
        return Client("/nonexistent", timeout=5.0, remote=remote)

    def raw(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=5, context=context)
        try:
            connection.request(method, "/v1" + path, headers=headers)
            response = connection.getresponse()
            return response.status, {**json.loads(response.read()), **dict(response.headers)}
        finally:
            connection.close()


@pytest.fixture
def tls(pcloud_home: Paths) -> Tls:
    return make_tls(pcloud_home.config_dir / "tls")


def make_tls(directory: Path) -> Tls:
    """A CA, a certificate for 127.0.0.1 signed by it, its key and a token, 0600 each."""
    directory.mkdir()
    ca_key, ca_cert = _certificate("pcloud test CA", None, None)
    key, cert = _certificate("127.0.0.1", ca_key, ca_cert)
    files = {
        "ca.pem": _pem_cert(ca_cert),
        "cert.pem": _pem_cert(cert),
        "key.pem": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
    token = secrets.token_urlsafe(32)
    files["token"] = token.encode() + b"\n"
    for name, data in files.items():
        (directory / name).write_bytes(data)
        (directory / name).chmod(0o600)
    return Tls(
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
        directory / "token",
        token,
        _free_port(),
    )


def _certificate(
    name: str, issuer_key: ec.EllipticCurvePrivateKey | None, issuer: x509.Certificate | None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(name))]), False
        )
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            False,
        )
    return key, builder.sign(issuer_key or key, hashes.SHA256())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_right_token_works_and_changes_are_logged_without_it(
    tls: Tls, cped_factory: CpedFactory
) -> None:
    cped = cped_factory(tls.config())
    client = tls.client()
    assert client.health()["pid"] == cped.pid
    client.create_assembly({"name": "web"})
    assert [row["name"] for row in cped.client.list_assemblies()] == ["web"]
    wait_for_log(cped, "change by tcp peer 127.0.0.1:")
    assert tls.token not in cped.log()


def test_a_missing_or_wrong_token_is_401_and_changes_nothing(
    tls: Tls, cped_factory: CpedFactory
) -> None:
    cped = cped_factory(tls.config())
    wrong = secrets.token_urlsafe(32)
    attempts: list[dict[str, str]] = [
        {},
        {"Authorization": f"Bearer {wrong}"},
        {"Authorization": f"Bearer {tls.token[:-1]}"},
        {"Authorization": f"Basic {tls.token}"},
        {"Authorization": "Bearer "},
    ]
    for headers in attempts:
        status, body = tls.raw("DELETE", "/jeos/host", headers)
        assert (status, body["code"], body["WWW-Authenticate"]) == (401, "unauthorized", "Bearer")
        assert tls.token not in json.dumps(body)
    with pytest.raises(Unauthorized) as refused:
        tls.client(token=wrong).create_assembly({"name": "web"})
    assert wrong not in str(refused.value) and tls.token not in str(refused.value)
    assert cped.client.list_assemblies() == []
    log = cped.log()
    assert log.count("refused tcp peer 127.0.0.1:") == len(attempts) + 1
    assert tls.token not in log and wrong not in log


def test_plain_http_gets_no_answer(tls: Tls, cped_factory: CpedFactory) -> None:
    cped = cped_factory(tls.config())
    connection = http.client.HTTPConnection("127.0.0.1", tls.port, timeout=5)
    try:
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            connection.request(
                "GET", "/v1/health", headers={"Authorization": f"Bearer {tls.token}"}
            )
            connection.getresponse()
    finally:
        connection.close()
    with pytest.raises(InvalidInput, match="https"):
        Remote.from_url(f"http://127.0.0.1:{tls.port}", tls.token)
    assert cped.client.health()["status"] == "ok"
    assert tls.token not in cped.log()


def test_a_certificate_the_client_does_not_trust_is_refused(
    tls: Tls, cped_factory: CpedFactory
) -> None:
    cped_factory(tls.config())
    remote = Remote.from_url(f"https://127.0.0.1:{tls.port}", tls.token, str(tls.certificate))
    with pytest.raises(Unavailable, match="TLS"):
        Client("/nonexistent", timeout=5.0, remote=remote).health()


@pytest.mark.parametrize("missing", ["tls_certificate", "tls_key", "token_file"])
def test_a_listener_without_tls_or_token_refuses_to_start(
    tls: Tls, pcloud_home: Paths, missing: str
) -> None:
    pcloud_home.config_file.write_text(tls.config(missing))
    # not --foreground: the refusal must come before cped detaches
    done = subprocess.run(
        [*cped_command()],
        env=cped_environment(pcloud_home),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert "[cped] listen" in done.stderr and f"[cped] {missing}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not pcloud_home.socket.exists() and not pcloud_home.pidfile.exists()


def test_a_listen_address_in_use_is_named_when_cped_cannot_start_each_time(
    tls: Tls, pcloud_home: Paths
) -> None:
    pcloud_home.config_file.write_text(tls.config())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", tls.port))
        taken.listen()
        for _ in range(2):  # the second start shows its own lines of the log, not the first's
            with pytest.raises(PcloudError) as refused:
                start_daemon(pcloud_home)
    message = str(refused.value)
    assert message.count(f"cannot listen on 127.0.0.1:{tls.port} ([cped] listen)") == 1, message
    assert f"cannot serve on {pcloud_home.socket}" not in message
    assert not pcloud_home.pidfile.exists()


def test_a_connection_that_sends_no_request_is_closed_after_the_idle_timeout(
    tls: Tls, cped_factory: CpedFactory
) -> None:
    cped = cped_factory(tls.config())
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    opened = time.monotonic()
    with (
        context.wrap_socket(
            socket.create_connection(("127.0.0.1", tls.port)), server_hostname="127.0.0.1"
        ) as silent_tcp,
        socket.socket(socket.AF_UNIX) as silent_local,
    ):
        silent_local.connect(str(cped.paths.socket))
        for silent in (silent_tcp, silent_local):
            silent.settimeout(IDLE_TIMEOUT + 10)
            assert silent.recv(1) == b""  # closed by cped, not by this timeout
    assert IDLE_TIMEOUT - 1 < time.monotonic() - opened < IDLE_TIMEOUT + 10
    assert tls.client().health()["status"] == "ok"


def test_a_token_file_every_user_can_read_is_refused(
    tls: Tls, pcloud_home: Paths, cped_factory: CpedFactory
) -> None:
    tls.token_file.chmod(0o644)
    cped = cped_factory(tls.config(), start=False)
    assert cped.spawn().wait(30) == 2
    assert "[cped] token_file" in cped.log() and "every user" in cped.log()
    assert tls.token not in cped.log()


def test_pcloudsh_reaches_the_listener_with_url_token_file_and_ca(
    tls: Tls, cped_factory: CpedFactory
) -> None:
    cped = cped_factory(tls.config())
    cped.client.create_assembly({"name": "web"})
    elsewhere = make_home()  # no cped there: only the TLS listener can answer
    try:
        env = {
            **cped_environment(cped.paths),
            "PCLOUD_HOME": str(elsewhere),
            "PCLOUD_URL": f"https://127.0.0.1:{tls.port}",
            "PCLOUD_TOKEN_FILE": str(tls.token_file),
            "PCLOUD_CA_FILE": str(tls.ca_file),
        }
        env.pop("PCLOUD_TOKEN", None)
        listed = subprocess.run(
            [*pcloudsh_command(), "assembly_list", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert listed.returncode == 0, listed.stderr
        assert [row["name"] for row in json.loads(listed.stdout)] == ["web"]
        wrong = tls.token_file.with_name("wrong")
        wrong.write_text(secrets.token_urlsafe(32))
        refused = subprocess.run(
            [*pcloudsh_command(), "assembly_list"],
            env={**env, "PCLOUD_TOKEN_FILE": str(wrong)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert refused.returncode == 1 and "bearer token is not valid" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def _pcloudsh_elsewhere(
    tls: Tls, elsewhere: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """pcloudsh in a home with no cped, pointed at the listener by PCLOUD_URL."""
    environ = cped_environment(resolve({"PCLOUD_HOME": str(elsewhere)}))
    environ.pop("PCLOUD_TOKEN", None)
    environ |= {
        "PCLOUD_URL": f"https://127.0.0.1:{tls.port}",
        "PCLOUD_TOKEN_FILE": str(tls.token_file),
        "PCLOUD_CA_FILE": str(tls.ca_file),
        **env,
    }
    return subprocess.run(
        [*pcloudsh_command(), *args], env=environ, capture_output=True, text=True, timeout=30
    )


def test_pcloudsh_status_asks_the_cped_of_pcloud_url(tls: Tls, cped_factory: CpedFactory) -> None:
    cped = cped_factory(tls.config())
    elsewhere = make_home()  # no cped there: only the TLS listener can answer
    try:
        url = f"https://127.0.0.1:{tls.port}"
        status = _pcloudsh_elsewhere(tls, elsewhere, "status")
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith(f"cped at {url} is running (pid {cped.pid}, ")
        data = json.loads(_pcloudsh_elsewhere(tls, elsewhere, "status", "--json").stdout)
        assert (data["running"], data["pid"], data["url"]) == (True, cped.pid, url)
        nobody = f"https://127.0.0.1:{_free_port()}"
        down = _pcloudsh_elsewhere(tls, elsewhere, "status", PCLOUD_URL=nobody)
        assert down.returncode == 3 and down.stdout.startswith(f"cped does not answer at {nobody}")
        listed = _pcloudsh_elsewhere(tls, elsewhere, "deployable_list", PCLOUD_URL=nobody)
        assert listed.returncode == 3 and "nothing answers on 127.0.0.1:" in listed.stderr
        assert "pcloudsh start" not in listed.stderr  # it starts this host's cped, not that one
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_a_refused_token_is_said_with_where_it_came_from(
    tls: Tls, cped_factory: CpedFactory
) -> None:
    cped_factory(tls.config())
    elsewhere = make_home()
    try:
        wrong_file = elsewhere / "wrong-token"
        wrong_file.write_text(secrets.token_urlsafe(32))
        wrong_file.chmod(0o600)
        wrong = secrets.token_urlsafe(32)
        said = {
            f"PCLOUD_TOKEN_FILE {wrong_file}": {"PCLOUD_TOKEN_FILE": str(wrong_file)},
            "PCLOUD_TOKEN": {"PCLOUD_TOKEN_FILE": "", "PCLOUD_TOKEN": wrong},
        }
        url = f"https://127.0.0.1:{tls.port}"
        for source, env in said.items():
            for command in (["assembly_list"], ["status"]):
                refused = _pcloudsh_elsewhere(tls, elsewhere, *command, **env)
                assert refused.returncode == 1, (command, refused.stdout, refused.stderr)
                assert refused.stderr.startswith(
                    f"pcloudsh: error: cped at {url} refused the bearer token of {source}: "
                ), refused.stderr
                assert wrong not in refused.stderr and tls.token not in refused.stderr
                assert "Traceback" not in refused.stderr
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


@pytest.mark.parametrize(
    ("url", "token", "said"),
    [
        ("https://[::1:8443", "t" * 32, "https://HOST:PORT"),
        ("https://127.0.0.1:8443", "t" * 16 + "\nX-Injected: 1", "printable ASCII"),
        ("https://127.0.0.1:8443", "t" * 16 + "\u20ac", "printable ASCII"),
    ],
)
def test_pcloudsh_refuses_a_malformed_url_or_token_by_name(
    pcloud_home: Paths, url: str, token: str, said: str
) -> None:
    env = {**cped_environment(pcloud_home), "PCLOUD_URL": url, "PCLOUD_TOKEN": token}
    env.pop("PCLOUD_TOKEN_FILE", None)
    done = subprocess.run(
        [*pcloudsh_command(), "assembly_list"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr
    assert token.strip() not in done.stderr


def test_a_new_token_takes_effect_on_sighup_and_the_old_one_stops_working(
    tls: Tls, cped_factory: CpedFactory
) -> None:
    cped = cped_factory(tls.config())
    old, new = tls.token, secrets.token_urlsafe(32)
    tls.token_file.write_text(new + "\n")
    reload(cped, tls.config())
    assert tls.client(token=new).health()["status"] == "ok"
    with pytest.raises(Unauthorized):
        tls.client(token=old).health()
    assert old not in cped.log() and new not in cped.log()
