"""What the admin panel shows and what it may write: who logs in, and the service's rules for the
books, accounts and orders it edits, enforced where Piccolo admin lets us (hooks, validators).

Piccolo admin writes rows as its forms send them, past the API's schemas. Its edit form re-sends
every column as it loaded it; the database refuses a stale ``version`` (the book's trigger), and
the hooks here drop or rewrite what only the service may set.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from bookstore.accounts.emails import validate_email
from bookstore.accounts.service import end_sessions
from bookstore.accounts.tables import UserTable
from bookstore.books.tables import BookTable
from bookstore.orders.tables import OrderItemTable, OrderTable

if TYPE_CHECKING:
    from piccolo_admin.endpoints import TableConfig
    from piccolo_api.crud.endpoints import PiccoloCRUD
    from starlette.requests import Request

__all__ = ["AdminUserTable", "table_configs"]

# Columns of a book only the service writes: its timestamps (the version trigger keeps updated_at;
# the form sends both cut to whole seconds) and its cover, which the cover routes keep consistent
# with the stored files. ``version`` stays in: the trigger refuses a form loaded before another write.
_BOOK_SERVICE_COLUMNS: Final = frozenset(
    [
        "created_at",
        "updated_at",
        *(column._meta.name for column in BookTable._meta.columns if column._meta.name.startswith("cover_")),
    ]
)
_ACCOUNT_SERVICE_COLUMNS: Final = frozenset(["created_at", "last_login"])


class AdminUserTable(UserTable, tablename="app_user"):
    """The ``app_user`` rows, as the admin panel sees them.

    Piccolo admin logs a user in with ``login()`` alone, which checks only the password; its
    per-request check (``admin`` and ``active``) would then refuse every page, after handing out
    a session. Checking both here refuses the login itself. ``admin`` is the one flag: it is the
    API's ``is_admin`` too; ``superuser`` adds managing accounts in the admin panel.
    """

    @classmethod
    async def login(cls, username: str, password: str) -> int | None:
        user_id = await super().login(username, password)
        if user_id is None:
            return None
        allowed = await cls.exists().where((cls.id == user_id) & cls.admin.eq(True) & cls.active.eq(True))
        return user_id if allowed else None

    @classmethod
    async def create_user(cls, username: str, password: str, **extra_params: Any) -> AdminUserTable:
        """An account added in the admin: its login name is its email, validated and normalised as
        the API's registration does (Piccolo answers a ValueError with 400)."""
        email = validate_email(extra_params.pop("email", None) or username)
        for name in ("id", *_ACCOUNT_SERVICE_COLUMNS):
            extra_params.pop(name, None)
        # A field the form left out arrives as None: the column's default applies.
        extra_params = {name: value for name, value in extra_params.items() if value is not None}
        user = await super().create_user(username=email, password=password, email=email, **extra_params)
        return user  # type: ignore[return-value]  # BaseUser.create_user returns an instance of cls


def table_configs() -> list[TableConfig]:
    """The tables of the admin panel, each with the rules it must follow there."""
    from piccolo_admin.endpoints import TableConfig
    from piccolo_api.crud.hooks import Hook, HookType
    from piccolo_api.crud.validators import Validators

    read_only = Validators(
        post_single=[_refuse_order_change],
        put_single=[_refuse_order_change],
        patch_single=[_refuse_order_change],
        delete_single=[_refuse_order_change],
        delete_all=[_refuse_order_change],
    )
    return [
        TableConfig(
            BookTable,
            hooks=[
                Hook(hook_type=HookType.pre_save, callable=_new_book),
                Hook(hook_type=HookType.pre_patch, callable=_book_changes),
            ],
            validators=Validators(put_single=[_refuse_put]),
        ),
        TableConfig(
            AdminUserTable,
            exclude_visible_columns=[AdminUserTable.password],
            hooks=[Hook(hook_type=HookType.pre_patch, callable=_account_changes)],
            validators=Validators(put_single=[_refuse_put]),
        ),
        TableConfig(OrderTable, validators=read_only),
        TableConfig(OrderItemTable, validators=read_only),
    ]


def _name(column: Any) -> str:
    # Piccolo passes the values keyed by Column objects, whose == builds SQL: compare names.
    return column._meta.name if hasattr(column, "_meta") else str(column)


def _book_changes(row_id: object, values: dict[Any, Any]) -> dict[Any, Any]:
    """Pre-patch hook: the form's values, less the primary key and what only the service writes."""
    return {
        column: value
        for column, value in values.items()
        if _name(column) not in _BOOK_SERVICE_COLUMNS and _name(column) != "id"
    }


def _new_book(row: BookTable) -> BookTable:
    """Pre-save hook: a book added in the admin starts at version 1, now, without a cover."""
    for name in _BOOK_SERVICE_COLUMNS:
        setattr(row, name, None)
    row.created_at = row.updated_at = datetime.now(UTC)
    row.version = 1
    return row


async def _account_changes(row_id: int, values: dict[Any, Any]) -> dict[Any, Any]:
    """Pre-patch hook on an account: one normalised email as login name and address; a password
    set here checked as the API checks it, ending the account's sessions (API and admin)."""
    from starlette.exceptions import HTTPException

    named = {_name(column): (column, value) for column, value in values.items()}
    for name in ("id", *_ACCOUNT_SERVICE_COLUMNS):
        named.pop(name, None)
    new_address = next((named[name][1] for name in ("email", "username") if name in named and named[name][1]), None)
    password = named["password"][1] if "password" in named else None
    try:
        if new_address is not None:
            email = validate_email(new_address)
            named["email"] = (AdminUserTable.email, email)
            named["username"] = (AdminUserTable.username, email)
        if "password" in named:
            AdminUserTable._validate_password(password or "")
    except ValueError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    if "password" in named:
        # The account's admin sessions end in the database (a trigger on any password change).
        await end_sessions(row_id)
    return dict(named.values())


async def _refuse_put(piccolo_crud: PiccoloCRUD, request: Request) -> None:
    """PUT replaces a whole row and runs no pre-patch hook (nor, for accounts, any password
    hashing); the admin's own pages never use it."""
    from starlette.exceptions import HTTPException

    raise HTTPException(status_code=405, detail="Change a row with PATCH (only the fields to change).")


async def _refuse_order_change(piccolo_crud: PiccoloCRUD, request: Request) -> None:
    from starlette.exceptions import HTTPException

    raise HTTPException(
        status_code=405, detail="Orders change only through the API, which keeps the books' stock right."
    )
