"""The recipes of a plant, versioned in the registry's store: `recipes/<name>/<version>.json`.

A version is never changed: importing a changed recipe adds the next version, and the newest one
is what scans of that recipe are measured against. Importing a recipe equal to its newest version
adds nothing. Engineers import recipes by hand (`battery-ct recipes import`), one at a time; two
imports of one recipe at the same instant could take the same number, the later one winning.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import yaml
from pydantic import ValidationError

from model_core.blob_store import BlobStore
from model_core.errors import BlobNotFound, ModelCoreError
from schemas.base import summarise
from schemas.recipes import Recipe

PREFIX = "recipes/"


class RecipeError(ModelCoreError):
    """A recipe file that is not valid, or a recipe that is not in the book."""

    code = "recipe_invalid"


class UnknownRecipe(RecipeError):  # noqa: N818 - reads as the refusal it is
    code = "recipe_unknown"


def parse_recipe(text: str, *, name: str = "recipe") -> Recipe:
    """A recipe from JSON or YAML text (YAML is a superset of JSON); `name` names it in errors."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{name} is neither JSON nor YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise RecipeError(f"{name} is not a mapping of fields (name, tolerances, ...)")
    try:
        return Recipe.model_validate(document)
    except ValidationError as exc:
        raise RecipeError(f"{name} is not a valid recipe: {summarise(exc, whole='recipe')}") from exc


def _key(name: str, version: int) -> str:
    return f"{PREFIX}{name}/{version:04d}.json"


class RecipeBook:
    def __init__(self, store: BlobStore) -> None:
        self._store = store

    def names(self) -> list[str]:
        return sorted({PurePosixPath(key).parent.name for key in self._store.list(PREFIX)})

    def versions(self, name: str) -> list[int]:
        found = []
        for key in self._store.list(f"{PREFIX}{name}/"):
            stem = PurePosixPath(key).stem
            if stem.isdigit() and PurePosixPath(key).parent.name == name:
                found.append(int(stem))
        return sorted(found)

    def get(self, name: str, version: int | None = None) -> Recipe:
        """The recipe's `version`, or its newest one. Raises `UnknownRecipe`."""
        versions = self.versions(name)
        if not versions or (version is not None and version not in versions):
            which = f"recipe {name!r}" + (f" version {version}" if version is not None else "")
            known = ", ".join(self.names()) or "none"
            raise UnknownRecipe(f"{which} is not in the registry (recipes: {known})")
        wanted = version if version is not None else versions[-1]
        try:
            data = self._store.get(_key(name, wanted))
        except BlobNotFound as exc:
            raise UnknownRecipe(f"recipe {name!r} version {wanted} is gone from the registry") from exc
        return parse_recipe(data.decode(), name=_key(name, wanted))

    def add(self, recipe: Recipe) -> tuple[Recipe, bool]:
        """Store `recipe` as its name's next version; (the stored recipe, whether it is new). A
        recipe equal to the newest version (its version number aside) is not stored again."""
        versions = self.versions(recipe.name)
        if versions:
            newest = self.get(recipe.name, versions[-1])
            if newest.model_copy(update={"version": None}) == recipe.model_copy(update={"version": None}):
                return newest, False
        stored = recipe.model_copy(update={"version": (versions[-1] + 1) if versions else 1})
        self._store.put(
            _key(stored.name, stored.version or 1), json.dumps(stored.model_dump(mode="json"), indent=2).encode()
        )
        return stored, True
