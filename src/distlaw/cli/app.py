"""The ``distlaw`` command line: a thin typer layer over the Python API.

Each command module registers itself on ``app``; every command has ``--json``. A
DistlawError (bad input) becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import inspect
import os
import sys

import typer
from rich.markup import escape

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from distlaw.cli import capacity, demo, density, design, fit, lab, plan, predict, prune, report, sweep, validate
from distlaw.cli.common import err_console
from distlaw.errors import DistlawError

app = typer.Typer(
    name="distlaw",
    help=(
        "Distillation scaling laws for language models: predict losses, fit laws to your runs, "
        "plan compute-optimal distillation, run the experiments, measure capacity density.\n\n"
        "Start with `distlaw demo`, or `distlaw predict --params 1e9 --tokens 2e10 --teacher-loss 2.2`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for module in (demo, predict, fit, plan, design, validate, report, lab, prune, sweep, capacity, density):
    module.register(app)


def _reflow(doc: str) -> str:
    """A docstring with each paragraph on one line (indented ones keep their indent), so that help
    text wraps to the terminal's width: typer's rich help keeps single line breaks as they are."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(("  " if p.startswith(" ") else "") + " ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _reflow_help(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = _reflow(info.callback.__doc__)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_help(group.typer_instance)


_reflow_help(app)


def _version(value: bool) -> None:
    if value:
        from distlaw import __version__

        print(f"distlaw {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Distillation scaling laws for language models."""


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _fail(message: str, code: int) -> None:
    err_console.print(f"[bold red]error:[/] {_one_line(message)}", highlight=False, soft_wrap=True, markup=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every ending is an answer or one line on stderr.

    Bad input (a DistlawError, a usage error such as an unknown flag, with click's "did you mean"
    hint kept) exits 2; an operating-system error (disk full, permission denied) exits 2 naming the
    file; Ctrl-C exits 130. Anything else is a bug in distlaw: one line, exit 1, and the traceback
    only with DISTLAW_TRACEBACK=1.
    """
    try:
        code = app(args=argv, prog_name="distlaw", standalone_mode=False)
    except DistlawError as exc:
        _fail(escape(str(exc)), 2)
    except NoArgsIsHelpError:
        sys.exit(0)  # `distlaw` or a bare group: its help is already printed
    except UsageError as exc:
        where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        _fail(escape(f"{where}{exc.format_message()}{hint}"), 2)
    except ClickException as exc:
        _fail(escape(exc.format_message()), exc.exit_code or 2)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(escape(f"{where}{exc.strerror or exc}"), 2)
    except Exception as exc:  # the last resort: a bug, still one line
        if os.environ.get("DISTLAW_TRACEBACK"):
            raise
        _fail(escape(f"internal error ({type(exc).__name__}: {exc}); please report it, "
                     "with the traceback that DISTLAW_TRACEBACK=1 prints"), 1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
