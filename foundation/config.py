"""The configuration file, typed, frozen and validated once.

An INI file at ``Paths.config_file`` (a missing file means the defaults) with a
``[cped]`` and a ``[dped]`` section.  Every problem is reported together, each
naming the file, the section and the key; unknown sections and keys are
problems too (a misspelt key silently ignored is a setting that never applies)::

    [cped]
    log_level = info
    socket_group = pcloud
    allowed_users = deploy 1001
    event_hook = /usr/local/bin/on-event --verbose
    dpe_backoff_max = 60s
    lease_ttl = 5s

    # store = postgresql://pcloud@db.example/pcloud?passfile=/etc/pacemaker-cloud/pgpass
    # (several cped members sharing one PostgreSQL database; default: SQLite)
    # member = node1              (this cped's name among members; default: the host name)
    # key_file = /etc/pacemaker-cloud/cluster.key   (required with a PostgreSQL store)

    [dped]
    policy_engine = builtin
    # policy_engine = pacemaker: plan with crm_simulate (dpe.pacemaker); see man dped

Comments go on their own lines (``#`` or ``;``): a ``#`` inside a value is part
of it, so hook command lines can contain one.

An optional TCP listener (``listen = 127.0.0.1:8443``) exists only with TLS
and a bearer token: ``listen`` without ``tls_certificate``, ``tls_key`` and
``token_file`` is a problem naming the missing settings.  The token itself
is read by cped (``cpe.access``), never kept here.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import grp
import pwd
import re
import shlex
import shutil
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from foundation.model import Problems, parse_duration

LOG_LEVELS = ("debug", "info", "warning", "error")
POLICY_ENGINES = ("builtin", "pacemaker")


@dataclass(frozen=True)
class CpedSettings:
    log_level: str = "info"
    socket_group: str | None = None  # group allowed to use the API socket (mode 0660)
    allowed_users: tuple[int, ...] = ()  # uids allowed besides root, cped's own and the group
    listen: tuple[str, int] | None = None  # TCP (host, port) of the TLS listener; None = none
    tls_certificate: Path | None = None  # PEM certificate chain of the TLS listener
    tls_key: Path | None = None  # its PEM private key
    token_file: Path | None = None  # file holding the bearer token TCP clients must send
    event_hook: tuple[str, ...] = ()  # command run for every new event; empty = none
    event_hook_timeout: float = 10.0
    dpe_backoff_initial: float = 1.0  # first delay before restarting a dead DPE
    dpe_backoff_max: float = 60.0  # cap of the exponential back-off
    lease_ttl: float = 5.0  # a DPE lease not renewed for this long is expired
    dpe_starts_at_once: int = 8  # deployables whose DPE is starting at once; others queue
    dpe_start_turn: float = 120.0  # the longest one start keeps its turn
    shutdown_timeout: float = 10.0  # how long a stop waits for requests in flight
    event_retention: float | None = 90 * 86400.0  # events older are deleted; None: kept forever
    store: str | None = None  # a postgresql:// URL shared by members; None: SQLite in the state dir
    member: str = ""  # this cped's name among the members; "" = the host name
    member_url: str | None = None  # where clients reach this member (cluster_status shows it)
    member_ttl: float = 2.0  # a member whose heartbeat is older is gone: others adopt its work
    key_file: Path | None = None  # the cluster key sealing private keys in a shared store

    @property
    def member_name(self) -> str:
        return self.member or member_default()


@dataclass(frozen=True)
class DpedSettings:
    policy_engine: str = "builtin"
    log_level: str = "info"
    lease_renew_interval: float = 1.0
    ssh_handshakes_at_once: int = 4  # SSH key exchanges at once on this host, all DPEs together
    fence_margin: float | None = None  # stop acting this long before the lease can expire
    local_instances_dir: Path | None = None  # the local driver's instances, shared by members
    local_bridge_netns: str = ""  # named network namespace of the local driver's guest bridge


@dataclass(frozen=True)
class Config:
    cped: CpedSettings = CpedSettings()
    dped: DpedSettings = DpedSettings()
    source: Path | None = None  # the file read; None when it did not exist


def load_config(path: Path, *, required: bool = False) -> Config:
    """Read and validate the configuration; InvalidInput lists every problem.

    A missing file gives the defaults unless ``required`` (a file named on the
    command line must exist).
    """
    problems = Problems()
    parser = _read(path, required, problems)
    if parser is None:
        problems.raise_if_any(f"invalid configuration in {path}")
        return Config()
    _check_sections(parser, problems)
    cped = _settings(CpedSettings, parser, "cped", problems)
    dped = _settings(DpedSettings, parser, "dped", problems)
    if not problems.items:
        _check_consistency(cped, dped, problems)
    problems.raise_if_any(f"invalid configuration in {path}")
    return Config(cped, dped, path)


def _read(path: Path, required: bool, problems: Problems) -> configparser.ConfigParser | None:
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    try:
        with path.open(encoding="utf-8") as stream:
            parser.read_file(stream)
    except (FileNotFoundError, NotADirectoryError):  # a file where a directory should be
        if required:
            problems.add("", "no such file")
        return None
    except (OSError, UnicodeDecodeError) as error:
        problems.add("", f"cannot read: {error}")
        return None
    except configparser.Error as error:
        problems.add("", _parser_message(error))
        return None
    return parser


def _parser_message(error: configparser.Error) -> str:
    """What is wrong and on which line; configparser's own words repeat the file
    name (given once, before every problem) and leave some line numbers out."""
    match error:
        case configparser.DuplicateOptionError():
            return f"line {error.lineno}: [{error.section}] {error.option} is set twice"
        case configparser.DuplicateSectionError():
            return f"line {error.lineno}: the section [{error.section}] appears twice"
        case configparser.MissingSectionHeaderError():
            return f"line {error.lineno}: {error.line.strip()!r} is not under a [section]"
        case configparser.ParsingError():
            return "; ".join(
                f"line {lineno}: not KEY = VALUE nor [section]: {_as_written(line)!r}"
                for lineno, line in error.errors
            )
    return str(error).replace("\n", " ")


def _check_sections(parser: configparser.ConfigParser, problems: Problems) -> None:
    for section in parser.sections():
        if section not in _SECTIONS:
            problems.add(f"[{section}]", "unknown section (known: [cped], [dped])")


def _settings(
    cls: type[Any], parser: configparser.ConfigParser, section: str, problems: Problems
) -> Any:
    if not parser.has_section(section):
        return cls()
    converters = _SECTIONS[section]
    values: dict[str, Any] = {}
    for key, text in parser.items(section):
        where = f"[{section}] {key}"
        if key not in converters:
            problems.add(where, f"unknown key (known: {', '.join(sorted(converters))})")
            continue
        try:
            values[key] = converters[key](text.strip())
        except ValueError as error:
            problems.add(where, str(error))
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})


def _check_consistency(cped: CpedSettings, dped: DpedSettings, problems: Problems) -> None:
    _check_listener(cped, problems)
    if cped.dpe_backoff_initial > cped.dpe_backoff_max:
        problems.add("[cped] dpe_backoff_initial", "must not exceed [cped] dpe_backoff_max")
    if dped.lease_renew_interval >= cped.lease_ttl:
        problems.add(
            "[dped] lease_renew_interval",
            f"must be shorter than [cped] lease_ttl ({cped.lease_ttl:g} s)",
        )
    elif fence_margin(cped, dped) >= cped.lease_ttl - dped.lease_renew_interval:
        problems.add(
            "[dped] fence_margin",
            "must leave time for a renewal: shorter than [cped] lease_ttl minus"
            " [dped] lease_renew_interval",
        )
    if cped.store is not None and cped.key_file is None:
        problems.add(
            "[cped] key_file",
            "a shared store needs the cluster key that seals the assemblies' private keys"
            " (the same file on every member; openssl rand -hex 32 > FILE; chmod 600 FILE)",
        )


def fence_margin(cped: CpedSettings, dped: DpedSettings) -> float:
    """How long before its lease can expire a DPE stops acting (default: a quarter TTL).

    The holder counts from the moment it sent its last successful renewal, on
    its own monotonic clock; the store counts the lease's life from when it
    ran that renewal, on its clock.  The margin covers those clocks' rates
    drifting apart (parts per million), a store clock stepped forward by less
    than the margin, and the holder noticing late (a busy loop) -- not the
    offset between the hosts' clocks, which never enters.
    """
    if dped.fence_margin is not None:
        return dped.fence_margin
    return cped.lease_ttl / 4


def member_default() -> str:
    """The host name's first label, as a member name."""
    name = socket.gethostname().split(".", 1)[0]
    return name if _MEMBER_NAME.fullmatch(name) else "cped"


TLS_SETTINGS = ("tls_certificate", "tls_key", "token_file")


def _check_listener(cped: CpedSettings, problems: Problems) -> None:
    """The TCP listener needs TLS and a token; TLS settings without it are a mistake."""
    given = [name for name in TLS_SETTINGS if getattr(cped, name) is not None]
    if cped.listen is not None and len(given) < len(TLS_SETTINGS):
        missing = ", ".join(f"[cped] {n}" for n in TLS_SETTINGS if n not in given)
        problems.add(
            "[cped] listen",
            f"a TCP listener needs TLS and a bearer token: set {missing}",
        )
    elif cped.listen is None and given:
        problems.add(f"[cped] {given[0]}", "is used only with [cped] listen, which is not set")


# ---------------------------------------------------------------------------
# value converters: text -> value, ValueError with a readable message


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text.lower() not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}: {text!r}")
        return text.lower()

    return convert


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"must be greater than zero: {text!r}")
    return seconds


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None
    if number <= 0:
        raise ValueError(f"must be greater than zero: {text!r}")
    return number


def _duration_or_forever(text: str) -> float | None:
    if text.strip() == "forever":
        return None
    return _positive_duration(text)


def _group(text: str) -> str | None:
    if not text:
        return None
    try:
        grp.getgrnam(text)
    except KeyError:
        raise ValueError(f"no such group: {text!r}") from None
    return text


def _users(text: str) -> tuple[int, ...]:
    """User names or numeric uids, separated by spaces or commas."""
    uids = []
    for word in text.replace(",", " ").split():
        if word.isdigit():
            uids.append(int(word))
            continue
        try:
            uids.append(pwd.getpwnam(word).pw_uid)
        except KeyError:
            raise ValueError(f"no such user: {word!r}") from None
    return tuple(uids)


def _address(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6); empty = no TCP listener."""
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not HOST:PORT (a port from 1 to 65535): {text!r}")
    return host, int(port)


def _file(text: str) -> Path | None:
    if not text:
        return None
    path = Path(text)
    if not path.is_absolute():
        raise ValueError(f"must be an absolute path: {text!r}")
    if not path.is_file():
        raise ValueError(f"no such file: {text!r}")
    return path


def _store_url(text: str) -> str | None:
    """``postgresql://...`` (libpq's URL; a password only in a passfile); empty: SQLite."""
    if not text:
        return None
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("must be a postgresql:// URL (or empty for the SQLite store)")
    if parts.password or "password=" in parts.query:
        raise ValueError("must not hold a password: name a passfile (?passfile=FILE)")
    return text


def _as_written(line: str) -> str:
    """A line of a ParsingError, which configparser keeps as its repr."""
    with contextlib.suppress(ValueError, SyntaxError):
        line = str(ast.literal_eval(line))
    return line.strip()


_MEMBER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def _member(text: str) -> str:
    if text and not _MEMBER_NAME.fullmatch(text):
        raise ValueError(f"not a member name (letters, digits, _ . -; 63 at most): {text!r}")
    return text


def _https_url(text: str) -> str | None:
    if not text:
        return None
    parts = urllib.parse.urlsplit(text)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"must be an https://HOST:PORT URL: {text!r}")
    return text


def _directory(text: str) -> Path | None:
    if not text:
        return None
    path = Path(text)
    if not path.is_absolute():
        raise ValueError(f"must be an absolute path: {text!r}")
    return path


def _netns_name(text: str) -> str:
    if text and not _MEMBER_NAME.fullmatch(text):
        raise ValueError(f"not a network namespace name: {text!r}")
    return text


def _command(text: str) -> tuple[str, ...]:
    if not text:
        return ()
    try:
        argv = tuple(shlex.split(text))
    except ValueError as error:
        raise ValueError(f"not a command line: {error}") from None
    if shutil.which(argv[0]) is None:
        raise ValueError(f"no such executable: {argv[0]!r}")
    return argv


_SECTIONS: dict[str, dict[str, Callable[[str], Any]]] = {
    "cped": {
        "log_level": _choice(LOG_LEVELS),
        "socket_group": _group,
        "allowed_users": _users,
        "listen": _address,
        "tls_certificate": _file,
        "tls_key": _file,
        "token_file": _file,
        "event_hook": _command,
        "event_hook_timeout": _positive_duration,
        "dpe_backoff_initial": _positive_duration,
        "dpe_backoff_max": _positive_duration,
        "lease_ttl": _positive_duration,
        "dpe_starts_at_once": _positive_int,
        "dpe_start_turn": _positive_duration,
        "shutdown_timeout": _positive_duration,
        "event_retention": _duration_or_forever,
        "store": _store_url,
        "member": _member,
        "member_url": _https_url,
        "member_ttl": _positive_duration,
        "key_file": _file,
    },
    "dped": {
        "policy_engine": _choice(POLICY_ENGINES),
        "log_level": _choice(LOG_LEVELS),
        "lease_renew_interval": _positive_duration,
        "ssh_handshakes_at_once": _positive_int,
        "fence_margin": _positive_duration,
        "local_instances_dir": _directory,
        "local_bridge_netns": _netns_name,
    },
}
