"""The configuration file: defaults, values, and every problem reported together."""

from __future__ import annotations

import grp
import itertools
import os
from pathlib import Path

import pytest

from foundation.config import Config, CpedSettings, DpedSettings, load_config
from foundation.errors import InvalidInput


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pacemaker-cloud.conf"
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[dict[str, str]]:
    with pytest.raises(InvalidInput) as caught:
        load_config(path)
    assert str(path) in caught.value.message
    details = caught.value.details
    assert isinstance(details, list)
    return details


def test_a_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.conf") == Config()


def test_a_missing_file_named_explicitly_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        load_config(tmp_path / "absent.conf", required=True)


def test_values_are_typed(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    path = write(
        tmp_path,
        f"""
# comment
[cped]
log_level = DEBUG
socket_group = {group}
event_hook = true --flag 'two words' #not-a-comment
dpe_backoff_max = 2m
lease_ttl = 1500ms

[dped]
policy_engine = pacemaker
lease_renew_interval = 0.5
""",
    )
    config = load_config(path)
    assert config.source == path
    assert config.cped == CpedSettings(
        log_level="debug",
        socket_group=group,
        event_hook=("true", "--flag", "two words", "#not-a-comment"),
        dpe_backoff_max=120.0,
        lease_ttl=1.5,
    )
    assert config.dped == DpedSettings(policy_engine="pacemaker", lease_renew_interval=0.5)


def test_every_problem_is_listed_with_section_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[cped]
log_level = chatty
lease_ttl = 5x
socket_group = no-such-group-here
event_hook = /no/such/program
colour = blue

[dped]
policy_engine = magic

[extras]
x = 1
""",
    )
    found = {p["path"]: p["message"] for p in problems_of(path)}
    assert set(found) == {
        "[cped] log_level",
        "[cped] lease_ttl",
        "[cped] socket_group",
        "[cped] event_hook",
        "[cped] colour",
        "[dped] policy_engine",
        "[extras]",
    }
    assert "chatty" in found["[cped] log_level"]
    assert "not a duration" in found["[cped] lease_ttl"]
    assert "unknown key" in found["[cped] colour"]


def test_settings_that_contradict_each_other(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[cped]\nlease_ttl = 1s\ndpe_backoff_initial = 10s\ndpe_backoff_max = 5s\n"
        "[dped]\nlease_renew_interval = 2s\n",
    )
    found = {p["path"] for p in problems_of(path)}
    assert found == {"[cped] dpe_backoff_initial", "[dped] lease_renew_interval"}


@pytest.mark.parametrize(
    "text",
    ["log_level = info\n", "[cped]\nlease_ttl = 1\nlease_ttl = 2\n", "[cped\n"],
)
def test_unparsable_files(tmp_path: Path, text: str) -> None:
    assert len(problems_of(write(tmp_path, text))) == 1


def test_zero_durations_are_refused(tmp_path: Path) -> None:
    found = problems_of(write(tmp_path, "[cped]\nlease_ttl = 0\n"))
    assert found[0]["path"] == "[cped] lease_ttl"


def test_the_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Config().cped.log_level = "debug"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400.0), ("12h", 43200.0), ("forever", None)]
)
def test_event_retention_is_a_duration_or_forever(
    tmp_path: Path, text: str, seconds: float | None
) -> None:
    path = write(tmp_path, f"[cped]\nevent_retention = {text}\n")
    assert load_config(path).cped.event_retention == seconds


def test_event_retention_refuses_zero_and_nonsense(tmp_path: Path) -> None:
    found = {
        p["path"]: p["message"]
        for p in problems_of(write(tmp_path, "[cped]\nevent_retention = 0\n"))
    }
    assert "greater than zero" in found["[cped] event_retention"]
    found = {
        p["path"]: p["message"]
        for p in problems_of(write(tmp_path, "[cped]\nevent_retention = always\n"))
    }
    assert "not a duration" in found["[cped] event_retention"]


def test_the_store_is_sqlite_unless_a_postgresql_url_is_given(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.conf").cped.store is None
    url = "postgresql://pcloud@db.example:5433/pcloud?passfile=/etc/pgpass"
    key = tmp_path / "cluster.key"
    key.write_text("00" * 32)
    config = load_config(write(tmp_path, f"[cped]\nstore = {url}\nkey_file = {key}\n"))
    assert config.cped.store == url and config.cped.key_file == key


def test_a_shared_store_needs_the_cluster_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[cped]\nstore = postgresql://pcloud@db/pcloud\n")
    (problem,) = problems_of(path)
    assert problem["path"] == "[cped] key_file" and "seals" in problem["message"]


def test_member_settings(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[cped]\nmember = node-1\nmember_ttl = 2s\n"))
    assert config.cped.member_name == "node-1" and config.cped.member_ttl == 2.0
    assert load_config(tmp_path / "absent.conf").cped.member_name  # the host name
    path = write(tmp_path, "[cped]\nmember = a:b\nmember_url = http://x:1\n")
    assert {p["path"] for p in problems_of(path)} == {"[cped] member", "[cped] member_url"}


def test_the_fence_margin_leaves_time_to_renew(tmp_path: Path) -> None:
    from foundation.config import fence_margin

    config = load_config(write(tmp_path, "[cped]\nlease_ttl = 4s\n"))
    assert fence_margin(config.cped, config.dped) == 1.0  # a quarter of the TTL by default
    path = write(tmp_path, "[cped]\nlease_ttl = 4s\n[dped]\nfence_margin = 3.5s\n")
    (problem,) = problems_of(path)
    assert problem["path"] == "[dped] fence_margin"


def test_a_bad_store_url_is_a_problem_that_never_shows_a_password(tmp_path: Path) -> None:
    path = write(tmp_path, "[cped]\nstore = mysql://db/x\n")
    assert "postgresql://" in problems_of(path)[0]["message"]
    path = write(tmp_path, "[cped]\nstore = postgresql://pcloud:hunter2@db/x\n")
    with pytest.raises(InvalidInput) as caught:
        load_config(path)
    assert "passfile" in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_dped_store_call_on_postgresql_ends_before_the_dped_must_fence(tmp_path: Path) -> None:
    from dpe.dped_process import options_from, store_timeout
    from foundation.store import DEFAULT_BUSY_TIMEOUT

    assert store_timeout(load_config(tmp_path / "absent.conf")) == DEFAULT_BUSY_TIMEOUT  # SQLite
    key = tmp_path / "cluster.key"
    key.write_text("00" * 32)
    config = load_config(
        write(tmp_path, f"[cped]\nstore = postgresql://p@db/p\nkey_file = {key}\n")
    )
    options = options_from(config)
    assert options.fence_margin == 1.25
    # the call returns before the DPE's acting window (5 - 1.25 s) minus a renewal is over
    assert store_timeout(config) == 5.0 - 1.25 - 1.0


def test_every_key_has_an_entry_of_its_own_in_the_man_page() -> None:
    """An entry is the line after ``.TP``: a key run into another entry's text is
    not found by a reader scanning the keys."""
    from foundation.config import _SECTIONS

    lines = (Path(__file__).parents[2] / "man" / "cped.8").read_text().splitlines()
    entries = " ".join(after for before, after in itertools.pairwise(lines) if before == ".TP")
    headed = set(entries.replace('"', " ").split())
    missing = [key for keys in _SECTIONS.values() for key in keys if key not in headed]
    assert missing == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[cped]\nlog_level = info\nlog_level = debug\n", "line 3: [cped] log_level is set twice"),
        ("[cped]\n[dped]\n[cped]\n", "line 3: the section [cped] appears twice"),
        ("log_level = info\n", "line 1: 'log_level = info' is not under a [section]"),
        ("[cped]\nlog_level\n", "line 2: not KEY = VALUE nor [section]: 'log_level'"),
    ],
)
def test_a_file_that_is_not_ini_names_the_line_once(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    assert problems_of(path) == [{"path": "", "message": message}]
