"""Ctrl-C while pcloudsh makes key pairs with the real M2Crypto, delivered at the
one moment where a raised ``KeyboardInterrupt`` is lost: while M2Crypto frees a
buffer in ``BIO.__del__`` (Python reports an exception there as unraisable and
goes on).  The import must stop all the same, and leave no key file."""

from __future__ import annotations

import io
import os
import signal
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from M2Crypto import BIO

from pcloudsh.documents import _make_keys
from pcloudsh.keystore import FileKeyStore
from pcloudsh.progress import show_progress

pytestmark = pytest.mark.integration
ASSEMBLIES = [f"a{n:02d}" for n in range(20)]


def _sigint_while_freeing(monkeypatch: pytest.MonkeyPatch, at_call: int) -> list[int]:
    """Wrap the real ``BIO.__del__``: its ``at_call``-th run is interrupted by SIGINT."""
    real_del: Callable[[BIO.BIO], None] = BIO.BIO.__del__
    calls: list[int] = []

    def freeing(bio: BIO.BIO) -> None:
        calls.append(1)
        if len(calls) == at_call:
            os.kill(os.getpid(), signal.SIGINT)  # its handler runs before this returns
        real_del(bio)

    monkeypatch.setattr(BIO.BIO, "__del__", freeing)
    return calls


def _environment(keys_dir: Path) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        show_progress=show_progress, stderr=io.StringIO(), keys=FileKeyStore(keys_dir)
    )


def test_a_ctrl_c_while_m2crypto_frees_a_buffer_stops_the_keys_and_removes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        calls = _sigint_while_freeing(monkeypatch, at_call=5)
        with pytest.raises(KeyboardInterrupt):
            _make_keys(_environment(tmp_path / "keys"), "big", ASSEMBLIES)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert 5 <= len(calls) < 4 * len(ASSEMBLIES)  # stopped early, not at the end
    assert sorted((tmp_path / "keys").iterdir()) == []


def test_left_alone_the_same_keys_are_all_made(tmp_path: Path) -> None:
    _make_keys(_environment(tmp_path / "keys"), "big", ASSEMBLIES)
    assert len(list((tmp_path / "keys").iterdir())) == 4 * len(ASSEMBLIES)
