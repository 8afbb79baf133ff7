"""Night bookkeeping: failures are recorded in one line, and a successful retry clears them."""

from __future__ import annotations

import pytest

from catalog.store import CatalogStore
from etl.errors import LakeError
from etl.nightly import one_line, recorded_failure


def test_a_retry_that_succeeds_clears_the_failure(tmp_path) -> None:
    store = CatalogStore(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(LakeError), recorded_failure(store, "run", "extract a"):
        raise LakeError("a: no delivery for 2026-11-28")
    with pytest.raises(LakeError), recorded_failure(store, "run", "extract b"):
        raise LakeError("b: broken")
    assert [e.message for e in store.errors("run")] == [
        "a: no delivery for 2026-11-28",
        "b: broken",
    ]
    with recorded_failure(store, "run", "extract a"):
        pass  # the file arrived; the retry succeeded
    assert [e.step for e in store.errors("run")] == ["extract b"]


def test_unexpected_errors_are_one_line_without_quoted_values(tmp_path) -> None:
    store = CatalogStore(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(ValueError), recorded_failure(store, "run", "validate x"):
        raise ValueError("Failed to parse string: '44070319850214123X' as a scalar\ndetails")
    (error,) = store.errors("run")
    assert error.message == "validate x: ValueError: Failed to parse string: '…' as a scalar"
    assert one_line(KeyError("name")) == "KeyError: '…'"
