"""contrib/pacemaker-cloud.conf: every setting, with its default, and it loads."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from foundation.config import Config, CpedSettings, DpedSettings, load_config

SAMPLE = Path(__file__).resolve().parents[2] / "contrib" / "pacemaker-cloud.conf"
# settings whose sample value names things of a particular host: shown, not defaults
HOST_SPECIFIC = {
    "socket_group",
    "allowed_users",
    "listen",
    "tls_certificate",
    "tls_key",
    "token_file",
    "event_hook",
    "store",
    "key_file",
    "member",
    "member_url",
    "local_instances_dir",
    "local_bridge_netns",
}
# settings whose default is computed from others: shown with an example
DERIVED = {"fence_margin"}


def commented_settings() -> dict[str, dict[str, str]]:
    """section -> key -> value of the ``# key = value`` lines."""
    found: dict[str, dict[str, str]] = {}
    section = ""
    for line in SAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"\[(\w+)\]", line):
            section = match.group(1)
        elif match := re.fullmatch(r"# (\w+) = (.+)", line):
            found.setdefault(section, {})[match.group(1)] = match.group(2)
    return found


def test_the_sample_as_shipped_loads_to_the_defaults() -> None:
    assert dataclasses.replace(load_config(SAMPLE), source=None) == Config()


def test_every_setting_is_in_the_sample() -> None:
    shown = commented_settings()
    assert set(shown) == {"cped", "dped"}
    assert set(shown["cped"]) == {f.name for f in dataclasses.fields(CpedSettings)}
    assert set(shown["dped"]) == {f.name for f in dataclasses.fields(DpedSettings)}


def test_each_value_shown_is_the_default(tmp_path: Path) -> None:
    shown = commented_settings()
    lines = ["[cped]"]
    shown_defaults = HOST_SPECIFIC | DERIVED
    lines += [f"{k} = {v}" for k, v in shown["cped"].items() if k not in shown_defaults]
    lines += [
        "[dped]",
        *(f"{k} = {v}" for k, v in shown["dped"].items() if k not in shown_defaults),
    ]
    written = tmp_path / "all.conf"
    written.write_text("\n".join(lines) + "\n")
    assert dataclasses.replace(load_config(written), source=None) == Config()
