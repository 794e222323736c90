"""Shared test fixtures: where the OSIPI reference data live (skip clearly when absent)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EXTERNAL = SHARED / "external"


def external(*parts) -> Path:
    """Path under ``../shared/external``; skips the test with a clear reason if it is absent."""
    p = EXTERNAL.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference data not found at {p} (the OSIPI data live in ../shared/external beside the repository)")
    return p
