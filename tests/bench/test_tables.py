"""The README's result tables are the ones the JSON records in bench/results/ give."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import tables  # noqa: E402


def test_readme_tables_match_the_records():
    assert tables.differing() == [], "run: python bench/tables.py"


def test_a_hand_edited_number_is_caught(tmp_path):
    readme = tmp_path / "README.md"
    text = (tables.ROOT / "README.md").read_text()
    start, end, table = tables.tables()["classify"]
    assert tables.readme_table(text, start, end) == table
    first_number = next(tok for tok in table.split("|") if tok.strip().startswith("0."))
    readme.write_text(text.replace(first_number, first_number.replace("0.", "0.0", 1), 1))
    assert tables.differing(readme) == ["classify"]
