"""`battery-ct recipes list / show / import`: the cell designs in the registry bucket."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facade.commands.checkpoints import guarded

if TYPE_CHECKING:
    from model_core.recipe_book import RecipeBook
    from schemas.settings import Settings

EXAMPLE = """\
A recipe file (JSON or YAML) names a cell design and its tolerances per measurement:

  name: 21700-nmc
  description: 21700 NMC cell, line 2
  pixel_mm: 0.034            # used when a scan event gives no pixel size
  tolerances:
    can.outer_diameter_mm: {nominal: 21.1, min: 20.95, max: 21.25}
    can.wall_min_mm: {min: 0.22}
    roll.layer_max_deviation_mm: {max: 0.15}
    overhang.min_mm: {min: 0.1}

Only the measurement families a recipe checks are measured for its scans (can, roll, overhang).
Measurement names: see the README ("Measurements").
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "recipes",
        help="list, show and import cell designs (recipes: tolerances per measurement)",
        description=(
            "Recipes in the models bucket (BATTERY_CT_BUCKET_MODELS, under recipes/). Every import of a changed "
            "recipe adds a version; scans are measured against the newest one.\n\n" + EXAMPLE
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every recipe with its newest version")
    listing.add_argument("--json", action="store_true", help="one JSON line per recipe: name, versions, newest")
    listing.set_defaults(handler=guarded(_list))
    showing = actions.add_parser("show", help="print a recipe as JSON (the newest version, or --version N)")
    showing.add_argument("name", metavar="NAME")
    showing.add_argument("--version", type=int, default=None, metavar="N", help="that version instead of the newest")
    showing.set_defaults(handler=guarded(_show))
    importing = actions.add_parser(
        "import",
        help="validate a recipe file (JSON or YAML) and store it as its name's next version",
        description="Validate FILE and store it; prints the stored version as JSON. An unchanged recipe is not "
        "stored again.\n\n" + EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    importing.add_argument("file", type=Path, metavar="FILE")
    importing.set_defaults(handler=guarded(_import))


def open_recipe_book(settings: Settings, *, create: bool = False) -> RecipeBook:
    from model_core.recipe_book import RecipeBook
    from storage.object_store import ObjectStore
    from storage.registry_store import S3BlobStore

    store = ObjectStore.from_settings(settings)
    if create:
        store.ensure_bucket(settings.bucket_models)
    return RecipeBook(S3BlobStore(store, settings.bucket_models))


def _list(args: argparse.Namespace, settings: Settings) -> int:
    book = open_recipe_book(settings)
    names = book.names()
    if not names:
        print(f"no recipes in s3://{settings.bucket_models} yet: `battery-ct recipes import FILE` adds one")
        return 0
    for name in names:
        versions = book.versions(name)
        newest = book.get(name)
        if args.json:
            print(json.dumps({"name": name, "versions": versions, "newest": newest.version}))
        else:
            checks = ", ".join(newest.tolerances) or "no tolerances"
            print(f"{name}  v{newest.version} ({len(versions)} versions)  {newest.description or ''}  [{checks}]")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    recipe = open_recipe_book(settings).get(args.name, args.version)
    print(json.dumps(recipe.model_dump(mode="json"), indent=2))
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from model_core.recipe_book import RecipeError, parse_recipe

    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read {args.file}: {exc}") from exc
    recipe = parse_recipe(text, name=str(args.file))
    stored, new = open_recipe_book(settings, create=True).add(recipe)
    print(json.dumps({"name": stored.name, "version": stored.version, "new": new}))
    if not new:
        print(f"{stored.name} v{stored.version} is already this recipe: nothing stored", file=sys.stderr)
    return 0
