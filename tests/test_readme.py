"""The README's settings table lists every setting with its variable and default (it is generated: no drift)."""

from __future__ import annotations

from pathlib import Path

from schemas.settings import Settings
from tools.settings_table import BEGIN, END, env_name, render_default, render_table, replace_table

README = Path(__file__).resolve().parents[1] / "README.md"


def _table() -> str:
    text = README.read_text()
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()


def test_readme_table_is_the_generated_one() -> None:
    assert _table() == render_table(), "run: python -m tools.settings_table --write"


def test_every_setting_has_a_row_with_its_variable_and_default() -> None:
    rows = {line.split("|")[1].strip().strip("`"): line for line in _table().splitlines()[2:]}
    for name, field in Settings.model_fields.items():
        row = rows[env_name(name)]
        assert f"`{render_default(field.get_default(call_default_factory=True))}`" in row
        assert field.description and field.description.replace("|", "\\|") in row
    assert len(rows) == len(Settings.model_fields)


def test_replace_table_keeps_the_rest_of_the_text() -> None:
    text = f"before\n{BEGIN}\nold table\n{END}\nafter\n"
    assert replace_table(text, "| new |") == f"before\n{BEGIN}\n| new |\n{END}\nafter\n"


def test_defaults_render_as_an_operator_types_them() -> None:
    assert render_default(True) == "true"
    assert render_default(None) == "(unset)"
    assert render_default(("a:1", "b:2")) == '["a:1", "b:2"]'
    assert render_default(Path.home() / ".cache" / "x") == "~/.cache/x"


def test_readme_names_the_test_command() -> None:
    assert "make test" in README.read_text()
