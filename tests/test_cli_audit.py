"""The CLI audit (issue 9): every command and subcommand of ``distlaw``, found by walking the typer app
(so a new command is audited without editing this file), answers ``--help``, and answers a missing
input file, a non-numeric or a negative number with exit code 2 and one line on stderr, never a
traceback; one meaning per short flag across all commands."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import pytest
import typer.main
from rich.text import Text

from distlaw.cli.app import app

OUTPUTS = ("out", "plot", "cache_dir")  # outputs (files, or folders made when missing); every other path parameter is read
SUFFIXES = (".csv", ".json", ".html", ".png", ".toml", ".db")
COUNTS = ("--params", "--tokens", "--student-params", "--compute", "--bootstrap", "--batch-size", "--workers", "--k",
          "--eval-tokens", "--calibration-tokens", "--checkpoint-every", "--seq-len", "--student", "--teacher-params")
# Short flags with a fixed meaning (issue 9, item 6): the long names each may stand for.
FIXED_SHORT = {"-s": {"--store"}, "-n": {"--params", "--student-params", "--student"}, "-c": {"--coefficients"},
               "-o": {"--out"}, "-q": {"--quiet"}, "-d": {"--tokens"}}


def _commands(command, path: tuple[str, ...] = ()):
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for name, sub in sorted(subcommands.items()):
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


COMMANDS = dict(_commands(typer.main.get_command(app)))


def _base(annotation) -> type | None:
    """The parameter's value type: Optional[X] and list[X] give X."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list) and args:
        return _base(args[0])
    return annotation if isinstance(annotation, type) else None


def _long(param) -> str:
    return next((o for o in param.opts if o.startswith("--")), param.name)


def _is_path(param) -> bool:
    return _base(param.type_descriptor.annotation) is Path


def _is_number(param) -> bool:
    return _base(param.type_descriptor.annotation) in (int, float) and not getattr(param, "is_flag", False)


def _inputs(command) -> list:
    return [p for p in command.params if _is_path(p) and p.name not in OUTPUTS]


def _value(param, tmp_path: Path, missing: Path) -> str:
    """A placeholder for a parameter: numbers 1000, choices their first, outputs a new file beside the
    test, inputs the missing file (with the suffix their help names)."""
    if _is_path(param):
        suffix = next((s for s in SUFFIXES if s in (param.help or "")), "")
        if param.name in OUTPUTS:
            return str(tmp_path / f"new-{param.name}{suffix}")
        return str(missing.with_suffix(suffix or missing.suffix))
    if _is_number(param):
        return "1000"
    choices = getattr(param, "choices", None) or getattr(getattr(param, "type", None), "choices", None)
    return str(list(choices)[0]) if choices else "x"


def _call(command, tmp_path: Path, missing: Path, override: dict[str, str] | None = None) -> list[str]:
    """Arguments giving every required parameter (and those in ``override``) a value, in declaration order."""
    override = override or {}
    args: list[str] = []
    for p in command.params:
        if p.name not in override and not p.required:
            continue
        value = override.get(p.name) or _value(p, tmp_path, missing)
        args += [value] if p.param_type_name == "argument" else [_long(p), value]
    return args


def _one_line(r, path: tuple[str, ...]) -> None:
    where = " ".join(path)
    assert r.code == 2, f"{where}: exit {r.code}: {r.stderr}"
    assert "Traceback" not in r.stderr + r.stdout, f"{where}: {r.stderr}"
    assert len(r.stderr.strip().splitlines()) == 1, f"{where}: {r.stderr!r}"


def _ids(paths) -> list[str]:
    return [" ".join(p) for p in paths]


@pytest.mark.parametrize("path", list(COMMANDS), ids=_ids(COMMANDS))
def test_help(cli, path):
    r = cli(*path, "--help")
    assert r.code == 0 and r.stderr == "", r.stderr
    assert "Usage" in r.stdout and "--help" in r.stdout
    assert "configs/" not in r.stdout, "help names a file of the source tree that an installed distlaw lacks (use the shipped config's name)"


@pytest.mark.parametrize("path", list(COMMANDS), ids=_ids(COMMANDS))
def test_help_text_survives_rich_markup(path):
    """typer renders help with rich markup, which silently drops an unescaped [data] or [[x, y]]: every
    bracket the docstring and the option helps hold must reach the reader (escape it as \\[data])."""
    command = COMMANDS[path]
    texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
    for text in texts:
        assert Text.from_markup(text).plain == text.replace("\\[", "["), f"{' '.join(path)}: rich drops brackets of {text[:80]!r}"


WITH_INPUTS = [p for p, c in COMMANDS.items() if _inputs(c)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", WITH_INPUTS, ids=_ids(WITH_INPUTS))
def test_missing_input_file(cli, tmp_path, path):
    command = COMMANDS[path]
    missing = tmp_path / "missing" / "nothing.csv"
    for param in _inputs(command):
        r = cli(*path, *_call(command, tmp_path, missing, {param.name: _value(param, tmp_path, missing)}))
        _one_line(r, path)
        assert sorted(p.name for p in tmp_path.iterdir()) == [], f"{' '.join(path)} {_long(param)}: wrote {list(tmp_path.iterdir())}"


WITH_NUMBERS = [p for p, c in COMMANDS.items() if any(_is_number(q) for q in c.params)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", WITH_NUMBERS, ids=_ids(WITH_NUMBERS))
def test_invalid_numbers(cli, tmp_path, path):
    command = COMMANDS[path]
    missing = tmp_path / "missing" / "nothing.csv"
    for param in (p for p in command.params if _is_number(p)):
        r = cli(*path, *_call(command, tmp_path, missing, {param.name: "abc"}))
        _one_line(r, path)
        assert _long(param) in r.stderr or param.name.upper() in r.stderr, f"{' '.join(path)}: {r.stderr}"
        if _long(param) in COUNTS:
            _one_line(cli(*path, *_call(command, tmp_path, missing, {param.name: "-5"})), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_one_meaning_per_short_flag():
    meanings: dict[str, set[str]] = {}
    carriers: dict[str, set[str]] = {}  # long name -> the short flags it has, per command
    for path, command in COMMANDS.items():
        for p in command.params:
            shorts = [o for o in [*p.opts, *p.secondary_opts] if o.startswith("-") and not o.startswith("--")]
            carriers.setdefault(_long(p), set()).update(shorts or {"(none)"})
            for short in shorts:
                meanings.setdefault(short, set()).add(_long(p))
    clashes = {s: names for s, names in meanings.items() if not (names <= FIXED_SHORT.get(s, set()) or (s not in FIXED_SHORT and len(names) == 1))}
    assert clashes == {}, f"short flags with more than one meaning: {clashes}"
    for short, names in FIXED_SHORT.items():
        for name in names & {"--store", "--out", "--quiet", "--coefficients", "--tokens", "--params"}:
            assert carriers.get(name, {short}) == {short}, f"{name} must have {short} on every command, has {carriers[name]}"
