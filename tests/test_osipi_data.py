"""The OSIPI reference data the tests read are in the repository, unmodified, with their license."""

import hashlib

from conftest import EXTERNAL


def test_osipi_reference_data_are_in_the_repository():
    sources = sorted(EXTERNAL.glob("*/SOURCE.txt"))
    assert (EXTERNAL / "NOTICE").exists() and len(sources) == 2
    for src in sources:
        assert (src.parent / "LICENSE").read_text().lstrip().startswith("Apache License")
        listed = [ln.split()[0] for ln in src.read_text().splitlines() if ln.startswith("  ") and "git blob" in ln]
        assert listed
        for rel in listed:
            path = src.parent / rel
            blob = next(ln for ln in src.read_text().splitlines() if ln.startswith(f"  {rel} ")).split()[-1][:-1]
            data = path.read_bytes()
            assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == blob, rel
