"""The generated reference pages (docs/reference/cli.md, plan.md) match the code: a changed help
string, option or plan field means rerunning ``python tools/docs_reference.py``."""
import dataclasses
import inspect
import sys
from pathlib import Path

import typer

from medcnn.cli.main import app
from medcnn.plan import Plan

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import docs_reference  # noqa: E402


def test_committed_pages_are_current():
    assert docs_reference.stale_pages() == [], "run: python tools/docs_reference.py"
    assert docs_reference.main(["--check"]) == 0


def test_every_command_is_documented():
    command = typer.main.get_command(app)
    names = command.list_commands(command.context_class(command, info_name="medcnn"))
    assert {"train", "predict", "serve"} <= set(names)
    page = (docs_reference.DOCS / "reference/cli.md").read_text(encoding="utf-8")
    for name in names:
        assert f"\n## medcnn {name}\n" in page, name


def _leaf_keys(obj, prefix=""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaf_keys(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def test_every_plan_field_is_documented():
    keys = list(_leaf_keys(Plan()))
    assert {"optim.lr", "augment.cutmix", "segment.patches_per_epoch"} <= set(keys)
    page = (docs_reference.DOCS / "reference/plan.md").read_text(encoding="utf-8")
    for key in keys:
        assert f"\n| `{key}` | " in page, key


def _option_info(command: str, param: str):
    """The typer.Option of ``param`` of ``medcnn command``, whose help text the CLI page shows."""
    callback = next(c.callback for c in app.registered_commands if c.callback.__name__ == command)
    return inspect.signature(callback).parameters[param].default


def test_changed_help_string_makes_the_cli_page_stale(monkeypatch):
    info = _option_info("fetch", "offline")
    monkeypatch.setattr(info, "help", info.help + " Changed.")
    assert "Changed." in docs_reference.cli_reference()
    assert docs_reference.stale_pages() == ["reference/cli.md"]
    assert docs_reference.main(["--check"]) == 1


def test_hand_edited_page_is_stale(tmp_path):
    expected = docs_reference.pages()
    for name, text in expected.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert docs_reference.stale_pages(tmp_path, expected) == []
    plan_page = tmp_path / "reference/plan.md"
    plan_page.write_text(plan_page.read_text(encoding="utf-8").replace("learning-rate", "learning rate", 1),
                         encoding="utf-8")
    assert docs_reference.stale_pages(tmp_path, expected) == ["reference/plan.md"]
