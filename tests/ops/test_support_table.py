"""The generated support tables in docs/ are up to date with the registries."""

from __future__ import annotations

from pathlib import Path

from tfless import support_table

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _section(text: str, begin: str, end: str) -> str:
    assert begin in text and end in text, "generated section markers are missing"
    return text.split(begin, 1)[1].split(end, 1)[0].lstrip("\n")


def test_formats_md_table_is_current() -> None:
    text = (DOCS / "formats.md").read_text()
    assert _section(text, support_table.BEGIN, support_table.END) == support_table.table(), \
        "docs/formats.md is stale: run python -m tfless.support_table --write-docs docs"


def test_onnx_md_gap_list_is_current() -> None:
    text = (DOCS / "onnx.md").read_text()
    got = _section(text, support_table.ONNX_BEGIN, support_table.ONNX_END)
    assert got == support_table.onnx_gaps(), \
        "docs/onnx.md is stale: run python -m tfless.support_table --write-docs docs"


def test_table_lists_runtime_onnx_and_c_support() -> None:
    rows = {line.split("|")[1].strip(): line for line in support_table.table().splitlines()
            if line.startswith("| `")}
    assert "| yes | yes | yes |" in rows["`Dense`"]
    assert "refused: " in rows["`Lambda`"]
    assert rows["`CategoryEncoding`"].split("|")[2].strip() == "yes"


def test_rewriting_keeps_the_rest_of_the_file(tmp_path) -> None:
    doc = tmp_path / "formats.md"
    doc.write_text("# Title\n\nkeep me\n")
    (tmp_path / "onnx.md").write_text("# ONNX\n")
    support_table.write_docs(tmp_path)
    support_table.write_docs(tmp_path)  # idempotent: one section, replaced in place
    text = doc.read_text()
    assert text.startswith("# Title\n\nkeep me\n") and text.count(support_table.BEGIN) == 1
