"""The docs say what the code does: tables generated from the registry stay in step."""

from __future__ import annotations

import weightstore as ws
from scripts import docs_tables


def test_the_format_table_in_the_docs_is_the_registrys() -> None:
    documented = docs_tables.in_docs(docs_tables.DOCS.read_text())
    assert documented is not None, "docs/formats.md lost its registry-table markers"
    assert documented == docs_tables.table(), (
        "docs/formats.md's codec table differs from the registry: run "
        "'python scripts/docs_tables.py --write'")


def test_every_registered_codec_has_a_row_and_a_section() -> None:
    text = docs_tables.DOCS.read_text()
    for cls in ws.formats():
        assert f"| {cls.name} |" in docs_tables.table()
        assert cls.name.lower() in text.lower()
