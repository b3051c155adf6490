"""``qcline orders``: import the customers' orders with their inspection profiles, and list them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from api.cli.common import (
    DataDirOption,
    JsonOption,
    out,
    print_json,
    require_database,
    settings_for,
)
from inspection.profiles import load_order_book

orders_app = typer.Typer(help="Custom orders and their inspection profiles.", no_args_is_help=True)


@orders_app.command("import")
def orders_import(file: Annotated[Path, typer.Argument(help="Orders file (YAML/JSON): profiles + orders.")],
                  data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Import (or update) orders and their inspection profiles; re-importing a file changes nothing."""
    from api.composition import open_store

    book = load_order_book(file)
    with open_store(settings_for(data_dir)) as store:
        counts = store.import_order_book(book)
    if as_json:
        print_json({"orders": len(book.orders), "profiles": len(book.profiles), **counts})
        return
    out.print(f"{len(book.orders)} orders, {len(book.profiles)} profiles from {file}: "
              + ", ".join(f"{v} {k}" for k, v in counts.items()))


@orders_app.command("list")
def orders_list(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """List orders with their profile."""
    from api.composition import open_store

    settings = settings_for(data_dir)
    require_database(settings)
    with open_store(settings) as store:
        orders = store.list_orders()
    if as_json:
        print_json([o.model_dump(mode="json") for o in orders])
        return
    table = Table("order", "customer", "product", "profile", "due")
    for o in orders:
        table.add_row(o.id, o.customer_ref, o.product, o.profile, str(o.due_date or ""))
    out.print(table)
