"""Recipes in the registry's store: versions added on change, the newest served, bad files refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_core.blob_store import LocalBlobStore
from model_core.recipe_book import RecipeBook, RecipeError, UnknownRecipe, parse_recipe

YAML = """
name: 21700-nmc
description: 21700 NMC cell, line 2
pixel_mm: 0.034
tolerances:
  can.outer_diameter_mm: {nominal: 21.1, min: 20.95, max: 21.25}
  overhang.min_mm: {min: 0.1}
"""


def test_json_and_yaml_read_the_same_and_bad_files_say_why() -> None:
    from_yaml = parse_recipe(YAML)
    from_json = parse_recipe(from_yaml.model_dump_json())
    assert from_yaml == from_json and from_yaml.tolerances["overhang.min_mm"].min == 0.1
    for text, expected in (
        ("- a list", "not a mapping"),
        ("name: [unclosed", "neither JSON nor YAML"),
        ("name: r\ntolerances: {can.radius_mm: {max: 1}}", "tolerances.can.radius_mm"),
    ):
        with pytest.raises(RecipeError, match=expected):
            parse_recipe(text, name="line2.yaml")


def test_a_changed_recipe_gets_the_next_version_and_an_unchanged_one_none(tmp_path: Path) -> None:
    book = RecipeBook(LocalBlobStore(tmp_path))
    first, new = book.add(parse_recipe(YAML))
    assert (first.version, new) == (1, True)
    again, new = book.add(parse_recipe(YAML))
    assert (again.version, new) == (1, False)
    wider = parse_recipe(YAML.replace("max: 21.25", "max: 21.3"))
    second, new = book.add(wider)
    assert (second.version, new) == (2, True)
    assert book.names() == ["21700-nmc"] and book.versions("21700-nmc") == [1, 2]
    assert book.get("21700-nmc") == second and book.get("21700-nmc", 1) == first
    with pytest.raises(UnknownRecipe, match="recipes: 21700-nmc"):
        book.get("4680")
    with pytest.raises(UnknownRecipe, match="version 7"):
        book.get("21700-nmc", 7)


def test_the_example_recipes_are_valid() -> None:
    examples = sorted((Path(__file__).parents[2] / "deploy" / "recipes").glob("*.yaml"))
    assert examples
    for path in examples:
        recipe = parse_recipe(path.read_text(), name=str(path))
        assert recipe.name == path.stem and recipe.tolerances
