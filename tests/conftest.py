"""Shared fixtures: tiny hermetic models for unit tests, the built-in SmolLM2 for integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from steerlab.paths import shared_data_dir
from steerlab.testing import tiny_model, tiny_tokenizer

# One thread: two threads per process thrash when test processes or other jobs share the 2 cores.
torch.set_num_threads(1)


@pytest.fixture()
def one_thread():
    """Torch at one thread for the test (modules opt in with ``pytestmark``), whatever an earlier test set."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tok():
    return tiny_tokenizer()


@pytest.fixture()
def model(tok):
    """A fresh tiny random Llama (4 layers, d=64) per test, so tests can mutate it freely."""
    return tiny_model("llama", vocab_size=len(tok))


@pytest.fixture(scope="session")
def smol():
    """(model, tokenizer) of the built-in smollm2-135m; converted once into the user cache, then cached."""
    from steerlab.models import load_model

    return load_model("smollm2-135m", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is absent (set STEERLAB_SHARED_DATA to its path to run this test)")
    return path
