"""Turn errors a user can fix into one line on stderr and a distinct exit code.

Exit codes: 2 usage (bad option or argument), 3 configuration, 4 identity key, 5 store,
6 daemon unreachable or request refused, 7 cannot listen (address in use or not local),
8 data dir in use by another daemon or unsafe.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from edgeswarm.node.addresses import ListenError
from edgeswarm.node.config import ConfigError
from edgeswarm.node.control.client import ControlError
from edgeswarm.node.data_dir import DataDirError
from edgeswarm.node.identity import IdentityError
from edgeswarm.node.store import StoreError


class UsageProblem(Exception):
    """The command line asks for something that cannot be done as given."""


EXIT_CODES: dict[type[Exception], int] = {
    UsageProblem: 2,
    ConfigError: 3,
    IdentityError: 4,
    StoreError: 5,
    ControlError: 6,
    ListenError: 7,
    DataDirError: 8,
}


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except tuple(EXIT_CODES) as exc:
        Console(stderr=True).print(f"[red]edgeswarm: error:[/red] {escape(str(exc))}", soft_wrap=True)
        code = next(code for kind, code in EXIT_CODES.items() if isinstance(exc, kind))  # subclasses too
        raise typer.Exit(code) from None
