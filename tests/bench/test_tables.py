"""The result tables (docs/results.md, the README's summary) are the ones the JSON records in
bench/results/ give."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import tables  # noqa: E402


def test_result_tables_match_the_records():
    for page, expected in tables.pages().items():
        assert tables.differing(page, expected) == [], f"{page}: run python bench/tables.py"


def test_a_hand_edited_number_is_caught(tmp_path):
    for page, name in ((tables.PAGE, "classify"), (tables.README, "summary")):
        copy = tmp_path / page.name
        text = page.read_text()
        expected = tables.pages()[page]
        start, end, table = expected[name]
        assert tables.readme_table(text, start, end) == table
        first_number = next(tok for tok in table.replace(",", " ").split() if tok.startswith("0."))
        copy.write_text(text.replace(first_number, first_number.replace("0.", "0.0", 1), 1))
        assert tables.differing(copy, expected) == [name]
