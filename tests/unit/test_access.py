"""Access rules of cped's API (``cpe.access``) and their configuration keys."""

from __future__ import annotations

import os
import pwd
from dataclasses import replace
from pathlib import Path

import pytest

from cpe.access import Access, Peer, load_access, tls_context
from cpe.client import Remote, remote_from_environment
from foundation.config import CpedSettings, load_config
from foundation.errors import Forbidden, InvalidInput, Unauthorized

TOKEN = "s3cret-token-0123456789abcdef"


def config(tmp_path: Path, text: str) -> CpedSettings:
    path = tmp_path / "pcloud.conf"
    path.write_text(text)
    return load_config(path).cped


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(InvalidInput) as refused:
        config(tmp_path, text)
    return str(refused.value)


def token_file(tmp_path: Path, text: str = TOKEN, mode: int = 0o600) -> Path:
    path = tmp_path / "token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


# -- configuration --------------------------------------------------------------------


def test_allowed_users_are_names_or_uids(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    settings = config(tmp_path, "[cped]\nallowed_users = nobody, 1234 root\n")
    assert settings.allowed_users == (nobody, 1234, 0)


def test_an_unknown_user_is_a_problem(tmp_path: Path) -> None:
    assert "[cped] allowed_users: no such user: 'no-such-user-x'" in problems(
        tmp_path, "[cped]\nallowed_users = no-such-user-x\n"
    )


@pytest.mark.parametrize("text", ["8443", "127.0.0.1:", "127.0.0.1:0", "h:99999", ":80", "h:x"])
def test_listen_must_be_host_and_port(tmp_path: Path, text: str) -> None:
    assert "[cped] listen: not HOST:PORT" in problems(tmp_path, f"[cped]\nlisten = {text}\n")


def test_listen_accepts_ipv6_in_brackets(tmp_path: Path) -> None:
    existing = token_file(tmp_path)
    text = (
        f"[cped]\nlisten = [::1]:8443\ntls_certificate = {existing}\ntls_key = {existing}\n"
        f"token_file = {existing}\n"
    )
    assert config(tmp_path, text).listen == ("::1", 8443)


@pytest.mark.parametrize("given", [(), ("tls_certificate",), ("tls_key", "token_file")])
def test_a_listener_without_tls_and_token_names_what_is_missing(
    tmp_path: Path, given: tuple[str, ...]
) -> None:
    existing = token_file(tmp_path)
    lines = "".join(f"{name} = {existing}\n" for name in given)
    message = problems(tmp_path, f"[cped]\nlisten = 127.0.0.1:8443\n{lines}")
    assert "[cped] listen: a TCP listener needs TLS and a bearer token" in message
    for name in ("tls_certificate", "tls_key", "token_file"):
        assert (f"[cped] {name}" in message) is (name not in given)


def test_tls_settings_without_a_listener_are_a_problem(tmp_path: Path) -> None:
    existing = token_file(tmp_path)
    message = problems(tmp_path, f"[cped]\ntoken_file = {existing}\n")
    assert "[cped] token_file: is used only with [cped] listen" in message


@pytest.mark.parametrize("value", ["relative/token", "/nonexistent/token"])
def test_files_must_exist_and_be_absolute(tmp_path: Path, value: str) -> None:
    assert "[cped] token_file:" in problems(tmp_path, f"[cped]\ntoken_file = {value}\n")


# -- the token -------------------------------------------------------------------------


def test_the_token_is_read_and_never_shown(tmp_path: Path) -> None:
    access = load_access(CpedSettings(token_file=token_file(tmp_path)))
    assert access.token == TOKEN.encode()
    assert TOKEN not in repr(access)


@pytest.mark.parametrize(
    ("text", "mode", "expected"),
    [
        (TOKEN, 0o644, "accessible to every user"),
        (TOKEN, 0o606, "accessible to every user"),
        ("short", 0o600, "at least 16"),
        ("has a space in it somewhere", 0o600, "without spaces"),
        ("", 0o600, "at least 16"),
    ],
)
def test_a_bad_token_file_is_refused(tmp_path: Path, text: str, mode: int, expected: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        load_access(CpedSettings(token_file=token_file(tmp_path, text, mode)))
    assert "[cped] token_file" in str(refused.value) and expected in str(refused.value)
    if text:
        assert text not in str(refused.value)


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"],
)
def test_a_missing_or_wrong_bearer_token_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized) as refused:
        Access(token=TOKEN.encode()).check_token(header)
    assert TOKEN not in str(refused.value)


def test_the_right_bearer_token_passes_whatever_the_scheme_case() -> None:
    Access(token=TOKEN.encode()).check_token(f"Bearer {TOKEN}")
    Access(token=TOKEN.encode()).check_token(f"bearer  {TOKEN} ")


def test_without_a_token_no_tcp_request_passes() -> None:
    with pytest.raises(Unauthorized, match="no token_file"):
        Access().check_token(f"Bearer {TOKEN}")


# -- peers on the UNIX socket -------------------------------------------------------------


def test_root_and_cpeds_own_uid_are_always_allowed() -> None:
    access = load_access(CpedSettings())
    assert access.uids == {0, os.geteuid()}
    access.check_peer(Peer(uid=0, gid=0, pid=1))
    access.check_peer(Peer(uid=os.geteuid(), gid=12345, pid=1))


def test_others_are_forbidden_unless_listed_or_in_the_group() -> None:
    access = Access(uids=frozenset({0}), gid=500, group_members=frozenset({"root"}))
    with pytest.raises(Forbidden, match="uid 4242"):
        access.check_peer(Peer(uid=4242, gid=4242, pid=7))
    access.check_peer(Peer(uid=4242, gid=500, pid=7))  # primary group
    replace(access, uids=frozenset({0, 4242})).check_peer(Peer(uid=4242, gid=1, pid=7))


def test_members_listed_in_the_group_database_are_allowed() -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    access = Access(uids=frozenset({0}), gid=500, group_members=frozenset({"nobody"}))
    access.check_peer(Peer(uid=nobody, gid=nobody, pid=7))


def test_a_peer_without_credentials_is_forbidden() -> None:
    with pytest.raises(Forbidden):
        Access(uids=frozenset({0})).check_peer(Peer())


def test_no_listener_no_tls_context() -> None:
    assert tls_context(CpedSettings()) is None


# -- the client's side ----------------------------------------------------------------------


def test_a_remote_needs_https_a_port_and_a_token() -> None:
    remote = Remote.from_url("https://127.0.0.1:8443", f" {TOKEN}\n", "/ca.pem")
    assert (remote.host, remote.port, remote.token, remote.url) == (
        "127.0.0.1",
        8443,
        TOKEN,
        "https://127.0.0.1:8443",
    )
    assert TOKEN not in repr(remote)
    for url in ("http://127.0.0.1:8443", "https://127.0.0.1", "127.0.0.1:8443", "https://h:x"):
        with pytest.raises(InvalidInput, match="https://HOST:PORT"):
            Remote.from_url(url, TOKEN)
    with pytest.raises(InvalidInput, match="empty bearer token"):
        Remote.from_url("https://127.0.0.1:8443", " \n")


def test_the_environment_names_the_remote(tmp_path: Path) -> None:
    url = "https://[::1]:8443"
    assert remote_from_environment({}) is None
    from_file = remote_from_environment(
        {"PCLOUD_URL": url, "PCLOUD_TOKEN_FILE": str(token_file(tmp_path)), "PCLOUD_TOKEN": "x"}
    )
    assert from_file is not None and from_file.token == TOKEN and from_file.url == url
    inline = remote_from_environment({"PCLOUD_URL": url, "PCLOUD_TOKEN": TOKEN})
    assert inline is not None and inline.token == TOKEN and inline.ca_file is None
    with pytest.raises(InvalidInput, match="PCLOUD_TOKEN_FILE"):
        remote_from_environment({"PCLOUD_URL": url})
    with pytest.raises(InvalidInput, match="cannot read PCLOUD_TOKEN_FILE"):
        remote_from_environment({"PCLOUD_URL": url, "PCLOUD_TOKEN_FILE": "/nonexistent"})


def test_a_header_with_undecodable_bytes_is_unauthorized_not_an_error() -> None:
    with pytest.raises(Unauthorized):
        Access(token=TOKEN.encode()).check_token("Bearer \udcff" + TOKEN)


def test_a_socket_group_that_vanished_is_a_problem() -> None:
    with pytest.raises(InvalidInput, match="no such group"):
        load_access(CpedSettings(socket_group="no-such-group-x"))
