"""Assembly keys shared through the store: sealed private keys, the same files on
another member, refusals that name no key material."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from foundation.errors import InvalidInput, StoreError
from foundation.keyfiles import key_paths, load_assembly_keys
from foundation.keyshare import KeyShare, load_cluster_key, seal, unseal
from foundation.store import Store
from images.keys import write_assembly_keys


@pytest.fixture
def cluster_key() -> bytes:
    return secrets.token_bytes(32)


def test_keys_published_by_one_member_are_fetched_by_another(
    store: Store, tmp_path: Path, cluster_key: bytes
) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    write_assembly_keys(here, "web")
    assert KeyShare(store, here, cluster_key).publish(["web", "absent"]) == ["web"]
    assert KeyShare(store, here, cluster_key).publish(["web"]) == []  # unchanged: not again
    assert KeyShare(store, there, cluster_key).fetch(["web", "absent"]) == ["web"]
    for mine, theirs in zip(key_paths(here, "web"), key_paths(there, "web"), strict=True):
        assert mine.read_bytes() == theirs.read_bytes()
    private, _, host_private, _ = key_paths(there, "web")
    assert private.stat().st_mode & 0o777 == 0o600
    assert host_private.stat().st_mode & 0o777 == 0o600
    fetched, original = load_assembly_keys(there, "web"), load_assembly_keys(here, "web")
    assert fetched.host_public_key == original.host_public_key  # the key the DPE pins


def test_the_store_never_holds_a_private_key_in_clear(
    store: Store, tmp_path: Path, cluster_key: bytes
) -> None:
    write_assembly_keys(tmp_path, "web")
    KeyShare(store, tmp_path, cluster_key).publish(["web"])
    row = store.get_assembly_keys("web")
    assert row is not None
    private, public, host_private, _ = key_paths(tmp_path, "web")
    body = private.read_text().splitlines()[1]  # a line of the PEM's base64
    assert all(body not in value for value in row.values())
    assert host_private.read_text().splitlines()[1] not in row["host_private_key"]
    assert row["public_key"] == public.read_text()


def test_another_cluster_key_cannot_unseal_and_says_so_without_secrets(
    store: Store, tmp_path: Path, cluster_key: bytes
) -> None:
    write_assembly_keys(tmp_path / "a", "web")
    KeyShare(store, tmp_path / "a", cluster_key).publish(["web"])
    with pytest.raises(StoreError, match="key_file is not the one") as refused:
        KeyShare(store, tmp_path / "b", secrets.token_bytes(32)).fetch(["web"])
    assert "PRIVATE" not in str(refused.value) and not (tmp_path / "b" / "web").exists()


def test_a_sealed_key_belongs_to_its_assembly_and_role(cluster_key: bytes) -> None:
    sealed = seal(cluster_key, "web", "private_key", b"secret")
    assert unseal(cluster_key, "web", "private_key", sealed) == b"secret"
    with pytest.raises(StoreError):
        unseal(cluster_key, "db", "private_key", sealed)
    with pytest.raises(StoreError):
        unseal(cluster_key, "web", "host_private_key", sealed)


def test_the_cluster_key_file_must_be_private_and_well_formed(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    assert len(load_cluster_key(path)) == 32
    path.chmod(0o644)
    with pytest.raises(InvalidInput, match="readable by others"):
        load_cluster_key(path)
    path.chmod(0o600)
    path.write_text("short")
    with pytest.raises(InvalidInput, match="64 hex digits"):
        load_cluster_key(path)
