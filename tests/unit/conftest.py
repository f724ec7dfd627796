"""Fixtures of the node-side unit tests: a local CA, an in-memory store, an authority."""

import pytest

from tests.nodeside import MemoryStore, authority, new_ca


@pytest.fixture
def ca(tmp_path):
    return new_ca(tmp_path / "ca")


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def auth(ca, store):
    return authority(ca, store)
