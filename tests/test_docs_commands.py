"""Every `microcnn ...` command written in the README and the docs is one the real CLI accepts.

Commands are taken from fenced shell blocks and inline code. Synopses are read as users would type them:
optional ``[--flag value]`` groups are included, ``a|b`` alternatives give their first, ``...`` is dropped.
Bare mentions of a subcommand (``microcnn cv``) name it and are only checked to exist.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from microcnn.cli import COMMANDS, build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted(
    p.relative_to(REPO)
    for p in [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "data").rglob("README.md")]
)
FENCE = re.compile(r"```(?:bash|sh|console)?\n(.*?)```", re.S)
INLINE = re.compile(r"`(microcnn [^`]+)`")
START = re.compile(r"(?:torchrun\s.*?-m\s+)?(microcnn\s[^#]*)")


def commands(text: str) -> list[str]:
    text = text.replace("\\\n", " ")
    found = []
    for block in FENCE.findall(text):
        for line in block.splitlines():
            for part in re.split(r"\s;\s|&&", line.strip()):
                if m := START.match(part.strip()):
                    found.append(m.group(1).strip())
    return found + INLINE.findall(text)


def as_typed(command: str) -> list[str]:
    words = shlex.split(command.replace("[", " ").replace("]", " ").replace("...", " "))
    return [w.split("|")[0] if "|" in w and not w.startswith("-") else w for w in words][1:]


@pytest.mark.parametrize("doc", DOCS, ids=str)
def test_documented_commands_parse_with_the_real_cli(doc: Path) -> None:
    parser = build_parser()
    subcommands = {name.replace("_", "-") for name in COMMANDS}
    for command in commands((REPO / doc).read_text(encoding="utf-8")):
        argv = as_typed(command)
        if not argv:
            continue
        assert argv[0] in subcommands, f"{doc}: `{command}` names no subcommand of {sorted(subcommands)}"
        if len(argv) == 1:  # a mention: "run `microcnn cv`"
            continue
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                parser.parse_args(argv)
            except SystemExit as exc:
                assert exc.code == 0, f"{doc}: `{command}` is refused by the CLI: {err.getvalue().strip()}"


def test_the_docs_hold_commands_to_check() -> None:
    found = [c for doc in DOCS for c in commands((REPO / doc).read_text(encoding="utf-8"))]
    full = [c for c in found if len(as_typed(c)) > 1]
    assert len(full) >= 30, full  # README alone documents a dozen; a broken extractor would find none


def test_the_checker_catches_a_wrong_command() -> None:
    """The Batch page once showed `microcnn predict-h5 M.safetensors a.h5 r.h5` (positional arguments)."""
    parser = build_parser()
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit) as exc:
        parser.parse_args(as_typed("microcnn predict-h5 M.safetensors a.h5 r.h5"))
    assert exc.value.code == 2
    assert as_typed("microcnn predict-h5 --method otsu|watershed [--invert] ...") == [
        "predict-h5", "--method", "otsu", "--invert"
    ]  # fmt: skip
