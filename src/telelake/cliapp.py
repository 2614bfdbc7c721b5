"""A small typed command line over argparse: a command is a plain function whose
parameters are annotated with `Arg` (positional) or `Opt` (an option or a flag).

It exists for start-up time: `telelake --help` and a one-shot `telelake sql` must cost
little more than Python and DuckDB themselves, and a full CLI framework costs more
than that before a command runs. Only the parser of the command being run is built.
`commands()` walks every command, for the generated reference (telelake.clidoc).
"""

from __future__ import annotations

import argparse
import inspect
import os
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Exit(Exception):
    """Raised by a command to end with exit code `code`."""

    def __init__(self, code: int = 0) -> None:
        super().__init__(code)
        self.code = code


class Opt:
    """An option (`--root PATH`) or, for a `bool` parameter, a flag (`--quiet`).

    `names` default to `--<parameter name>`; `min` bounds a number; `envvar` names an
    environment variable that gives the default.
    """

    def __init__(
        self,
        *names: str,
        help: str = "",
        min: float | None = None,
        envvar: str | None = None,
        metavar: str | None = None,
    ) -> None:
        self.names = names
        self.help = help
        self.min = min
        self.envvar = envvar
        self.metavar = metavar


class Arg:
    """A positional argument; optional when the parameter has a default."""

    def __init__(self, help: str = "", metavar: str | None = None) -> None:
        self.help = help
        self.metavar = metavar


@dataclass(frozen=True)
class Param:
    """One parameter of a command, as the parser and the reference see it."""

    name: str  # the function's parameter
    info: Opt | Arg
    kind: type  # str, int, float, Path or bool
    many: bool  # list[...]: the option may be repeated
    default: Any
    required: bool

    @property
    def is_flag(self) -> bool:
        return self.kind is bool and isinstance(self.info, Opt)

    @property
    def flags(self) -> list[str]:
        if isinstance(self.info, Arg):
            return []
        return list(self.info.names) or ["--" + self.name.replace("_", "-")]

    @property
    def metavar(self) -> str:
        if self.info.metavar:
            return self.info.metavar
        return self.name.upper()

    @property
    def option_metavar(self) -> str:
        """`--older-than` takes OLDER_THAN."""
        long = next((f for f in self.flags if f.startswith("--")), self.flags[0])
        return long.lstrip("-").replace("-", "_").upper()

    @property
    def type_name(self) -> str:
        return {str: "text", int: "integer", float: "number", Path: "path", bool: "flag"}[self.kind]

    def help_text(self) -> str:
        """The help, with the default shown unless the help says it already."""
        text = self.info.help
        default = self.default
        shown = default not in (None, False, (), []) and "[default:" not in text
        return f"{text} [default: {default}]" if shown else text


@dataclass
class Command:
    """One command: its name, its function, and its help (the function's docstring)."""

    name: str
    function: Callable[..., Any]

    @property
    def help(self) -> str:
        return inspect.cleandoc(self.function.__doc__ or "")

    @property
    def summary(self) -> str:
        return self.help.split("\n\n")[0].replace("\n", " ")

    def params(self) -> list[Param]:
        """The parameters, read from the function's signature and annotations."""
        hints = typing.get_type_hints(self.function, include_extras=True)
        out = []
        for name, p in inspect.signature(self.function).parameters.items():
            hint = hints[name]
            if typing.get_origin(hint) is not typing.Annotated:
                raise TypeError(f"{self.name}: parameter {name} needs an Arg or Opt annotation")
            base, *extras = typing.get_args(hint)
            info = next(e for e in extras if isinstance(e, Opt | Arg))
            kind, many = _base_type(base)
            required = p.default is inspect.Parameter.empty
            default = None if required else p.default
            out.append(Param(name, info, kind, many, default, required))
        return out

    def parser(self, prog: str) -> argparse.ArgumentParser:
        """The argparse parser of this command alone."""
        parser = argparse.ArgumentParser(
            prog=prog,
            description=self.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for p in self.params():
            _add(parser, p)
        return parser

    def run(self, argv: Sequence[str], prog: str) -> Any:
        values = vars(self.parser(prog).parse_args(argv))
        return self.function(**values)


class App:
    """A group of commands (and of sub-groups: `telelake migrate up`)."""

    def __init__(self, name: str, help: str) -> None:
        self.name = name
        self.help = help
        self.entries: dict[str, Command | App] = {}

    @property
    def summary(self) -> str:
        return self.help.split("\n\n")[0]

    def command(self, name: str | None = None) -> Callable[[Callable[..., Any]], Any]:
        """Decorator: register a function as the command `name` (default: its name)."""

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            command = name or function.__name__.replace("_", "-")
            self.entries[command] = Command(command, function)
            return function

        return register

    def add_app(self, app: App) -> None:
        """Add a group of commands under its name."""
        self.entries[app.name] = app

    def parser(self, prog: str) -> argparse.ArgumentParser:
        """The parser of this group: its commands, each with its summary only."""
        parser = argparse.ArgumentParser(prog=prog, description=self.help)
        sub = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
        for name, entry in self.entries.items():
            sub.add_parser(name, help=entry.summary)
        return parser

    def run(self, argv: Sequence[str], prog: str | None = None) -> Any:
        """Parse `argv` and run the command it names (help without one)."""
        prog = prog or self.name
        if not argv or argv[0] in ("-h", "--help"):
            self.parser(prog).print_help()
            return None
        entry = self.entries.get(argv[0])
        if entry is None:
            self.parser(prog).parse_args(argv[:1])  # exits 2 naming the choices
            raise AssertionError("unreachable")  # pragma: no cover
        return entry.run(argv[1:], f"{prog} {argv[0]}")

    def commands(self, prefix: str = "") -> Iterator[tuple[str, Command]]:
        """Every command, depth first, with its full name (`migrate up`)."""
        for name, entry in self.entries.items():
            full = f"{prefix} {name}".strip()
            if isinstance(entry, App):
                yield from entry.commands(full)
            else:
                yield full, entry


def _base_type(hint: Any) -> tuple[type, bool]:
    """(str, int, float, Path or bool; repeated?) of an annotation without its Annotated."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if len(args) != 1:
            raise TypeError(f"unsupported parameter type {hint!r}")
        return _base_type(args[0])
    if origin is list:
        kind, _ = _base_type(args[0])
        return kind, True
    if hint in (str, int, float, Path, bool):
        return hint, False
    raise TypeError(f"unsupported parameter type {hint!r}")


def _convert(p: Param) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = p.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {p.type_name}: {text!r}") from None
        low = p.info.min if isinstance(p.info, Opt) else None
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"{text} is below the minimum, {low:g}")
        return value

    return convert


def _add(parser: argparse.ArgumentParser, p: Param) -> None:
    if isinstance(p.info, Arg):
        parser.add_argument(
            p.name,
            metavar=p.metavar,
            type=_convert(p),
            nargs=None if p.required else "?",
            default=p.default,
            help=p.help_text(),
        )
        return
    if p.is_flag:
        parser.add_argument(*p.flags, dest=p.name, action="store_true", help=p.help_text())
        return
    default = p.default
    if p.info.envvar:
        default = os.environ.get(p.info.envvar, default)
    parser.add_argument(
        *p.flags,
        dest=p.name,
        metavar=p.info.metavar or p.option_metavar,
        type=_convert(p),
        action="append" if p.many else "store",
        default=default,
        required=p.required and not default,
        help=p.help_text() + (f" [env: {p.info.envvar}]" if p.info.envvar else ""),
    )
