"""What a user can get wrong, as one line and an exit code of its own (the CLI's error boundary).

A command raises one of these (or lets a library's error through: `user_error_for` recognises a bad
setting, an unreachable Redis or database); `nvf` prints the line and exits with the code, and never
shows a user a traceback for them. The codes follow BSD's sysexits where one fits:

| code | error | what |
|---|---|---|
| 1 | | the command ran and its answer is no (e.g. `nvf timeline --verify` found a broken chain) |
| 2 | `BadInput` | a bad argument or option: a date, a file that is not a scenario (also Click's own usage errors) |
| 69 | `ServiceUnavailable` | Redis or the database cannot be reached (EX_UNAVAILABLE) |
| 73 | `OutputPathError` | an output file cannot be written where asked: its folder cannot be created (EX_CANTCREAT) |
| 78 | `ConfigError` | a bad setting (variable or `.env`), or a schema behind this version's (EX_CONFIG) |
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from pydantic import ValidationError


class UserError(Exception):
    """A mistake or a condition the user can fix; its message is the one line they see."""

    exit_code: ClassVar[int] = 1
    label: ClassVar[str] = "error"

    def __str__(self) -> str:
        # One line, whatever the message was built from.
        return " ".join(super().__str__().split())


class BadInput(UserError):
    exit_code = 2
    label = "bad input"


class ServiceUnavailable(UserError):
    exit_code = 69
    label = "unreachable"


class OutputPathError(UserError):
    exit_code = 73
    label = "cannot write"


class ConfigError(UserError):
    exit_code = 78
    label = "configuration"


EXIT_CODES: dict[int, str] = {
    1: "the command's answer is no (e.g. a broken hash chain)",
    BadInput.exit_code: "bad input: an argument or option (a date, a scenario file)",
    ServiceUnavailable.exit_code: "Redis or the database cannot be reached",
    OutputPathError.exit_code: "an output file's folder cannot be created or written",
    ConfigError.exit_code: "a setting (environment or .env) is invalid",
}


# --- what commands check themselves ------------------------------------------------------------


def parse_day(value: str | None, option: str) -> date | None:
    """An option's date as YYYY-MM-DD (None stays None)."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{option} {value!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-03-09") from None


def check_output_file(path: Path, option: str) -> Path:
    """Make sure, before any work is done, that an output file can be written: its folder is created
    if missing (as the writers always did); one that cannot be is refused with the reason."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise OutputPathError(f"{option} {path}: cannot create the folder {folder}, {blocker} is a file; "
                              f"choose another path") from None
    except OSError as exc:
        raise OutputPathError(f"{option} {path}: cannot create the folder {folder} ({exc.strerror or exc}); "
                              f"choose another path") from None
    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a folder; name a file in it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} {path}: the folder {folder} is not writable; choose another path")
    return path


# --- what the boundary recognises in a library's errors -------------------------------------------


def settings_error(exc: ValidationError) -> ConfigError:
    """A Settings validation error as one line naming the variable and the rule."""
    from marketplace.settings import env_names, mask_url

    errors = exc.errors()
    first = errors[0]
    loc = str(first["loc"][0]) if first["loc"] else ""
    # The location is the field's name, or the alias the value came by (`REDIS_URL`).
    field = next((f for f, names in env_names().items() if loc == f or loc.upper() in names), loc)
    variable = loc.upper() if loc.upper() in env_names().get(field, []) else env_names().get(field, [loc.upper()])[0]
    value = first.get("input")
    shown = ""
    if isinstance(value, str):
        shown = "=" + repr((mask_url(value) if field.endswith("_url") else value)[:60])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    rule = str(first["msg"]).removeprefix("Value error, ")
    return ConfigError(f"setting {variable}{shown}: {rule}{more}; fix it in the environment or .env, "
                       f"or unset it for the default")


def user_error_for(exc: BaseException) -> UserError | None:
    """The user error `exc` stands for (itself, or one it was caused by), if any."""
    for error in _chain(exc):
        found = _classify(error)
        if found is not None:
            return found
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, what it was raised from, and the members of exception groups (task groups wrap)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        error = stack.pop(0)
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        if isinstance(error, BaseExceptionGroup):
            stack.extend(error.exceptions)
        if error.__cause__ is not None:
            stack.append(error.__cause__)
        elif error.__context__ is not None and not error.__suppress_context__:
            stack.append(error.__context__)


def _classify(error: BaseException) -> UserError | None:
    if isinstance(error, UserError):
        return error
    from pydantic import ValidationError

    if isinstance(error, ValidationError) and error.title == "Settings":
        return settings_error(error)
    import redis.exceptions

    if isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return _redis_unreachable(error)
    if _while_connecting_to_database(error):
        return _database_unreachable(error)
    return None


def _reason(error: BaseException) -> str:
    orig = getattr(error, "orig", None)  # SQLAlchemy's wrapper: the driver's own words
    text = str(orig if orig is not None else error) or type(error).__name__
    return " ".join(text.split("(Background on this error")[0].split())


def _redis_unreachable(error: BaseException) -> ServiceUnavailable:
    from marketplace.settings import Settings, mask_url

    url = Settings().redis_url
    if url:
        return ServiceUnavailable(f"Redis at {mask_url(url)} cannot be reached ({_reason(error)}); start it, "
                                  f"or fix REDIS_URL (unset, an embedded Redis is used)")
    return ServiceUnavailable(f"the embedded Redis stopped answering ({_reason(error)}); run the command again, "
                              f"or set REDIS_URL to a Redis server")


def _while_connecting_to_database(error: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError

    if not isinstance(error, (OSError, DBAPIError)):
        return False
    # Raised while SQLAlchemy's pool made a connection: the server, the file or the login failed.
    return any(frame.f_code.co_name == "__connect" and "sqlalchemy" in frame.f_code.co_filename
               and "pool" in frame.f_code.co_filename for frame, _ in traceback.walk_tb(error.__traceback__))


def _database_unreachable(error: BaseException) -> ServiceUnavailable:
    from marketplace.settings import Settings, mask_url

    settings = Settings()
    where = mask_url(settings.effective_database_url)
    fix = "fix DATABASE_URL (unset, a SQLite file in the state directory is used)" if settings.database_url \
        else "check that NVF_STATE_DIR is a folder you can write to"
    return ServiceUnavailable(f"the database at {where} cannot be reached ({_reason(error)}); start it, or {fix}")
