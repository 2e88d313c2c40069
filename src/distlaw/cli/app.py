"""The ``distlaw`` command line: a thin typer layer over the Python API.

Each command module registers itself on ``app``; every command has ``--json``. A
DistlawError (bad input) becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import inspect
import sys

import typer

from distlaw.cli import capacity, demo, density, fit, lab, plan, predict, prune, report, sweep
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

for module in (demo, predict, fit, plan, report, lab, prune, sweep, capacity, density):
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


def main(argv: list[str] | None = None) -> None:
    """Console entry point. Usage errors exit 2 (typer); a DistlawError prints one line and exits 2."""
    try:
        app(args=argv, prog_name="distlaw")
    except DistlawError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
