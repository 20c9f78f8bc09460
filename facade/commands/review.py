"""`battery-ct review migrate | users add | users list`: the review station's database and people."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from schemas.settings import Settings

DESCRIPTION = """\
Look after the review station's database (BATTERY_CT_REVIEW_DATABASE_URL): bring its schema to
the newest version, and manage the people who sign in to the /review pages of the facade.
Operators decide cells; engineers also roll models back.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "review",
        help="the review station's database and users",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    migrate = actions.add_parser(
        "migrate", help="bring the database's schema to the newest version (every service also does at start)"
    )
    migrate.set_defaults(handler=_migrate)

    users = actions.add_parser("users", help="add or list the people who sign in")
    user_actions = users.add_subparsers(dest="user_action", metavar="ACTION", required=True)
    add = user_actions.add_parser(
        "add",
        help="add a user (or, with --replace, set a user's password and role)",
        description="Add a user. The password is asked for twice, or read from stdin with --password-stdin.",
    )
    add.add_argument("username")
    add.add_argument("--role", choices=("operator", "engineer"), default="operator", help="default: operator")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add.add_argument("--replace", action="store_true", help="change an existing user's password and role")
    add.set_defaults(handler=_add_user)
    listed = user_actions.add_parser("list", help="the users, their roles and whether they are disabled")
    listed.set_defaults(handler=_list_users)


def _database() -> Any:
    from reviews.database import Database

    return Database.open(Settings().review_database_url.get_secret_value())


def _migrate(args: argparse.Namespace) -> int:
    from reviews.database import DatabaseUnavailable

    try:
        database = _database()
    except DatabaseUnavailable as exc:
        print(f"battery-ct: {exc}", file=sys.stderr)
        return 1
    print(f"review database at the newest schema ({database.backend})")
    database.close()
    return 0


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        print("battery-ct: the two passwords differ", file=sys.stderr)
        return None
    return first


def _add_user(args: argparse.Namespace) -> int:
    from reviews.people import InvalidUser, add_user

    password = _read_password(args)
    if password is None:
        return 2
    database = _database()
    try:
        database.run(lambda s: add_user(s, args.username, password, args.role, replace=args.replace))
    except InvalidUser as exc:
        print(f"battery-ct: {exc}", file=sys.stderr)
        return 2
    finally:
        database.close()
    print(f"{args.username}: {args.role}")
    return 0


def _list_users(args: argparse.Namespace) -> int:
    from reviews.people import users

    database = _database()
    try:
        for name, role, disabled in database.run(users):
            print("\t".join([name, role, *(["disabled"] if disabled else [])]))
    finally:
        database.close()
    return 0
