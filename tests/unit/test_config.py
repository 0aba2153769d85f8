"""The configuration file: defaults, values, and every problem reported together."""

from __future__ import annotations

import grp
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
