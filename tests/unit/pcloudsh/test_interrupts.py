"""Signals taken over for a block: recorded around a commit, raised at checkpoints
around work whose finalizers would swallow them."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import warnings
import weakref
from collections.abc import Iterator

import pytest

from pcloudsh.interrupts import interrupts_at_checkpoints, interrupts_held, raise_on_terminate
from pcloudsh.oneshot import _let_go


class SignalledWhileFreed:
    """Like M2Crypto's buffers: freed in ``__del__``; the signal arrives meanwhile."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        os.kill(os.getpid(), self.signum)  # its handler runs before __del__ returns


def _free_one_signalled(signum: int = signal.SIGINT) -> None:
    SignalledWhileFreed(signum)  # dropped at once: __del__ runs here
    gc.collect()


@pytest.fixture(autouse=True)
def handlers_put_back() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_without_a_block_the_interrupt_raised_in_a_finalizer_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The failure the checkpoints exist for: Python reports it as unraisable and goes on."""
    unraisable: list[sys.UnraisableHookArgs] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _free_one_signalled()
    assert [u.exc_type for u in unraisable] == [KeyboardInterrupt]


def test_an_interrupt_during_a_finalizer_is_raised_at_the_next_checkpoint() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    reached = []
    with pytest.raises(KeyboardInterrupt), interrupts_at_checkpoints() as checkpoint:
        checkpoint()
        reached.append("first")
        _free_one_signalled()
        reached.append("after the finalizer")
        checkpoint()
        reached.append("after the checkpoint")
    assert reached == ["first", "after the finalizer"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_end_of_the_block_is_a_checkpoint() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt), interrupts_at_checkpoints():
        _free_one_signalled()


def test_sigterm_takes_the_handler_the_one_shot_runner_gives_it() -> None:
    raise_on_terminate()
    with pytest.raises(KeyboardInterrupt), interrupts_at_checkpoints() as checkpoint:
        _free_one_signalled(signal.SIGTERM)
        checkpoint()


def test_an_ignored_signal_stays_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupts_at_checkpoints() as checkpoint:
        _free_one_signalled()
        checkpoint()
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_a_signal_left_to_its_default_action_still_ends_the_process() -> None:
    code = (
        "import signal, os\n"
        "from pcloudsh.interrupts import interrupts_at_checkpoints\n"
        "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
        "with interrupts_at_checkpoints() as checkpoint:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    print('deferred', flush=True)\n"
        "    checkpoint()\n"
        "    print('not reached', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert (done.returncode, done.stdout) == (-signal.SIGTERM, "deferred\n")


def test_held_signals_are_recorded_not_raised() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with interrupts_held() as received:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
    assert received == [signal.SIGINT, signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_what_an_interrupted_frame_held_is_freed_without_a_warning() -> None:
    """Ctrl-C between a socket's making and its use: freed with its frame, quietly (a
    ResourceWarning would follow the quiet end of --watch on standard error)."""
    held: list[weakref.ref[socket.socket]] = []

    def makes_a_socket() -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        held.append(weakref.ref(sock))
        raise KeyboardInterrupt

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            makes_a_socket()
        except KeyboardInterrupt as error:
            _let_go(error)
            assert held[0]() is None  # freed, and so closed, here
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]
