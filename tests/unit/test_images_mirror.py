"""The host's apt sources decide the mirror a JEOS is built from."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation.errors import InvalidInput
from images import mirror

DEB822 = """\
Types: deb
# a comment inside the stanza
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/none-such.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb deb-src
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
"""


def test_deb822_stanzas() -> None:
    sources = list(mirror.parse_deb822(DEB822))
    assert [s.uri for s in sources] == [
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    ]
    assert sources[0].suites == ("bookworm", "bookworm-updates")
    assert sources[0].components == ("main", "contrib")
    assert sources[0].signed_by == "/usr/share/keyrings/none-such.gpg"


def test_deb822_several_uris_and_continuation_lines() -> None:
    text = "Types: deb\nURIs: http://a.example/debian\n http://b.example/debian\nSuites: trixie\nComponents: main\n"
    assert [s.uri for s in mirror.parse_deb822(text)] == [
        "http://a.example/debian",
        "http://b.example/debian",
    ]


def test_one_line_format_with_options_and_comments() -> None:
    text = (
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main # tail\n"
        "deb http://two.example/debian bookworm-updates main\n"
    )
    sources = list(mirror.parse_one_line(text))
    assert [(s.uri, s.suites, s.signed_by) for s in sources] == [
        ("http://one.example/debian", ("bookworm",), "/k.gpg"),
        ("http://two.example/debian", ("bookworm-updates",), None),
    ]


def test_choose_prefers_a_source_listing_the_release() -> None:
    sources = [
        mirror.AptSource("http://sec.example/debian-security", ("bookworm-security",), ("main",)),
        mirror.AptSource("http://old.example/debian", ("bullseye",), ("main",)),
        mirror.AptSource("http://new.example/debian", ("bookworm",), ("main",)),
    ]
    assert mirror.choose_mirror(sources, "bookworm") == mirror.Mirror("http://new.example/debian")
    # another release: the host's main archive, never the security pocket
    assert mirror.choose_mirror(sources, "trixie") == mirror.Mirror("http://old.example/debian")


def test_choose_skips_sources_without_main_or_with_odd_schemes() -> None:
    sources = [
        mirror.AptSource("http://x.example/debian", ("bookworm",), ("contrib",)),
        mirror.AptSource("cdrom:[Debian]/", ("bookworm",), ("main",)),
    ]
    assert mirror.choose_mirror(sources, "bookworm") is None


def test_keyring_is_kept_only_when_it_exists(tmp_path: Path) -> None:
    keyring = tmp_path / "k.gpg"
    keyring.write_bytes(b"")
    found = mirror.choose_mirror(
        [mirror.AptSource("http://m.example/debian", ("bookworm",), ("main",), str(keyring))],
        "bookworm",
    )
    assert found == mirror.Mirror("http://m.example/debian", keyring)


def _apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_host_mirror_reads_both_formats_and_ignores_other_files(tmp_path: Path) -> None:
    apt = _apt_dir(
        tmp_path,
        {
            "sources.list": "",
            "sources.list.d/a.list.disabled": "deb http://off.example/debian bookworm main\n",
            "sources.list.d/debian.sources": DEB822,
        },
    )
    assert mirror.host_mirror("bookworm", apt).uri == "http://mirror.example/debian"


def test_one_line_sources_come_first(tmp_path: Path) -> None:
    apt = _apt_dir(
        tmp_path,
        {
            "sources.list": "deb http://first.example/debian bookworm main\n",
            "sources.list.d/debian.sources": DEB822,
        },
    )
    assert mirror.host_mirror("bookworm", apt).uri == "http://first.example/debian"


def test_no_usable_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no Debian mirror"):
        mirror.host_mirror("bookworm", tmp_path)
