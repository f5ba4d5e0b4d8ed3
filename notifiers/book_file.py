"""The address book in a key directory, as each process (a notifier, a region's system) keeps it.

A copy is never taken as complete: a unit is listed by whichever notifier first routes to it, so an
address or key a copy lacks is looked up again in the book on disk before anything is refused.
"""

from __future__ import annotations

from pathlib import Path

from notifiers.address_book import AddressBook
from notifiers.provisioning import address_book_path, load_directory


class AddressBookFile:
    """The address book in a key directory, re-read whenever the file has changed since it was read."""

    def __init__(self, directory: Path, book: AddressBook | None = None) -> None:
        self.path = address_book_path(directory)
        self._stamp = self._now_stamp() if book is not None else None
        self._book = book

    def _now_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        # The inode too: a save replaces the file, so even a same-size rewrite in the same
        # nanosecond tick is seen as new.
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> AddressBook:
        """The book as it is on disk now (one stat when nothing changed)."""
        stamp = self._now_stamp()
        if self._book is None or stamp != self._stamp:
            self._book = load_directory(self.path.parent)
            self._stamp = stamp
        return self._book

    def adopt(self, book: AddressBook) -> None:
        """`book` was just written (or read) by this process: it is the current one."""
        self._book, self._stamp = book, self._now_stamp()
