"""`nvf keys init|rotate|list`: the secure messages' keys of the 21 regions.

Keys live in `<state dir>/keys/` (`NVF_STATE_DIR`, default `.nvf`): the address book with every
public key, and one private key store per region (directories 0700, files 0600).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from marketplace.settings import Settings
from matchers.reference import regions
from notifiers.address_book import Organisation
from notifiers.identifiers import functional_address
from notifiers.keystore import KeyStoreError
from notifiers.provisioning import init_demo_keys, load_directory, rotate_keys

console = Console()
err_console = Console(stderr=True)

DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="key directory; default: keys/ in the state directory (NVF_STATE_DIR)"),
]


def default_key_directory() -> Path:
    return Settings().state_dir / "keys"


def region_organisations() -> list[Organisation]:
    """The 21 regions, each with one functional address for its brokering function."""
    return [
        Organisation(
            org_number=r.org_number, name=r.name, code=r.code, addresses=(functional_address(r.org_number),)
        )
        for r in regions().values()
    ]


def register(app: typer.Typer) -> None:
    keys = typer.Typer(help="Keys of the secure messages: create, rotate, list.", no_args_is_help=True)

    @keys.command("init")
    def init(directory: DirOption = None) -> None:
        """Create signing and encryption keys for the 21 regions (keeps keys that already exist)."""
        target = directory or default_key_directory()
        book = init_demo_keys(target, region_organisations())
        console.print(f"{len(book.organisations)} organisations have keys in {target}")

    @keys.command("rotate")
    def rotate(
        org: Annotated[str, typer.Argument(help="organisation number, region code or functional address")],
        directory: DirOption = None,
    ) -> None:
        """Give one organisation a new current key pair; old public keys stay listed as retired."""
        target = directory or default_key_directory()
        entry = load_directory(target).resolve(org)
        if entry is None:
            err_console.print(
                f"[red]{org} is not in the address book in {target}[/red] (run `nvf keys init`)"
            )
            raise typer.Exit(1)
        try:
            book = rotate_keys(target, entry.org_number)
        except KeyStoreError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        rotated = book.organisations[entry.org_number]
        console.print(
            f"{entry.name} ({entry.org_number}): "
            f"signing key {rotated.current_key('signing').key_id}, "
            f"encryption key {rotated.current_key('encryption').key_id}"
        )

    @keys.command("list")
    def list_keys(directory: DirOption = None) -> None:
        """Show every organisation's addresses and public keys, current and retired."""
        target = directory or default_key_directory()
        book = load_directory(target)
        if not book.organisations:
            err_console.print(f"no address book in {target} (run `nvf keys init`)")
            raise typer.Exit(1)
        table = Table(title=f"address book ({target})")
        for column in ("code", "organisation", "org number", "address", "use", "key id", "created", "status"):
            table.add_column(column)
        for entry in sorted(book.organisations.values(), key=lambda e: (e.code or "", e.org_number)):
            for key in sorted(entry.keys, key=lambda k: (k.use, k.created_at)):
                status = (
                    f"retired {key.retired_at:%Y-%m-%d %H:%M}" if key.retired_at else "[green]current[/green]"
                )
                table.add_row(
                    entry.code or "",
                    entry.name,
                    entry.org_number,
                    ", ".join(entry.addresses),
                    key.use,
                    key.key_id,
                    f"{key.created_at:%Y-%m-%d %H:%M}",
                    status,
                )
        console.print(table)

    app.add_typer(keys, name="keys")
