"""dped's SSH cipher preference: AES-GCM first only where the CPU does AES."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from asyncssh.encryption import get_default_encryption_algs

from dpe import transport


@pytest.fixture
def fresh_choice() -> Iterator[None]:
    transport.encryption_algorithms.cache_clear()
    yield
    transport.encryption_algorithms.cache_clear()


@pytest.mark.usefixtures("fresh_choice")
@pytest.mark.parametrize("has_aes", [True, False])
def test_gcm_comes_first_only_with_aes_instructions(
    monkeypatch: pytest.MonkeyPatch, has_aes: bool
) -> None:
    monkeypatch.setattr(transport, "_cpu_has_aes", lambda: has_aes)
    chosen = transport.encryption_algorithms()
    defaults = [name.decode() for name in get_default_encryption_algs()]
    assert sorted(chosen) == sorted(defaults)  # nothing added, nothing dropped
    if has_aes:
        assert chosen[:2] == ["aes256-gcm@openssh.com", "aes128-gcm@openssh.com"]
    else:
        assert chosen == defaults


@pytest.mark.parametrize(
    ("cpuinfo", "has_aes"),
    [
        ("processor\t: 0\nflags\t\t: fpu sse2 aes avx2 sha_ni\n", True),
        ("processor\t: 0\nflags\t\t: fpu sse2 vaes avx2\n", False),  # a word, not a part
        ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1\n", True),
        ("processor\t: 0\nmodel name\t: aes\nflags\t\t: fpu\n", False),
    ],
)
def test_aes_instructions_are_read_from_the_cpu_flags(
    tmp_path: Path, cpuinfo: str, has_aes: bool
) -> None:
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert transport._cpu_has_aes(str(tmp_path / "cpuinfo")) is has_aes


def test_without_cpu_information_gcm_is_not_preferred(tmp_path: Path) -> None:
    assert transport._cpu_has_aes(str(tmp_path / "missing")) is False
