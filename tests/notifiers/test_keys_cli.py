"""`nvf keys` on a throwaway Typer app."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from marketplace.entrypoints.commands.keys import register
from notifiers.provisioning import address_book_path, load_directory

runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Throwaway root so that `keys` is a sub-command, as under `nvf`."""

    register(app)
    return app


def test_init_list_rotate(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["keys", "init", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "21 organisations" in result.output
    book = load_directory(tmp_path)
    assert len(book.organisations) == 21
    assert book.organisations["232100-0016"].addresses == ("SE2321000016-NVF",)
    assert stat.S_IMODE((tmp_path / "232100-0016").stat().st_mode) == 0o700

    result = runner.invoke(app, ["keys", "list", "--dir", str(tmp_path)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "Region Stockholm" in result.output and "232100-0016" in result.output
    assert result.output.count("current") == 42 and "retired" not in result.output

    old = book.organisations["232100-0016"].current_key("signing").key_id
    result = runner.invoke(app, ["keys", "rotate", "01", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rotated = load_directory(tmp_path).organisations["232100-0016"]
    assert rotated.current_key("signing").key_id != old
    assert rotated.key(old, "signing") is not None and rotated.key(old, "signing").retired  # type: ignore[union-attr]

    result = runner.invoke(app, ["keys", "list", "--dir", str(tmp_path)], env={"COLUMNS": "250"})
    assert result.output.count("retired") == 2 and result.output.count("current") == 42

    # Running init again keeps every key.
    before = address_book_path(tmp_path).read_bytes()
    assert runner.invoke(app, ["keys", "init", "--dir", str(tmp_path)]).exit_code == 0
    assert address_book_path(tmp_path).read_bytes() == before


def test_default_directory_is_in_the_state_directory(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["keys", "init"], env={"NVF_STATE_DIR": str(tmp_path / "state")})
    assert result.exit_code == 0, result.output
    assert address_book_path(tmp_path / "state" / "keys").is_file()


def test_rotate_unknown_and_list_empty(app: typer.Typer, tmp_path: Path) -> None:
    assert runner.invoke(app, ["keys", "list", "--dir", str(tmp_path)]).exit_code == 1
    runner.invoke(app, ["keys", "init", "--dir", str(tmp_path)])
    result = runner.invoke(app, ["keys", "rotate", "556036-0793", "--dir", str(tmp_path)])
    assert result.exit_code == 1
