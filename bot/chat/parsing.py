"""Turning chat text into a command and its arguments, or a clear, short error.

Deliberately simple: whitespace-separated words, no quoting, no shell. Every argument must
match its declared pattern (ASCII names only), so ``dev; rm -rf /``, ``../etc/passwd`` and
look-alike unicode never get past here, and errors echo input only through ``chat.code``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from bot.core.ids import GIT_REF
from bot.core.replies import INVALID, code
from commands.base import REF_ARG, Arg, Command

MAX_INPUT = 1000


@dataclass(frozen=True)
class Invocation:
    command: Command
    args: dict[str, str]


@dataclass(frozen=True)
class ParseError:
    message: str


def parse(text: str, prefix: str, registry: dict[str, Command]) -> Invocation | ParseError | None:
    """``None`` when the text is not addressed to the bot (no prefix): say nothing then."""
    stripped = text.strip()
    if not stripped.startswith(prefix):
        return None
    unreadable = _unreadable(text, stripped)
    if unreadable is not None:
        return unreadable
    words = stripped[len(prefix) :].split()
    if not words:
        return ParseError(f"empty command; {prefix}help lists the commands")
    name = words[0].lower()
    command = registry.get(name)
    if command is None:
        return ParseError(f"unknown command {code(words[0])}; {prefix}help lists the commands")
    values = words[1:]
    usage = f"usage: {command.usage(prefix)}"
    if command.args and command.args[-1].rest and len(values) > len(command.args):
        last = len(command.args) - 1
        values = [*values[:last], " ".join(values[last:])]
    if len(values) > len(command.args):
        extra = " ".join(values[len(command.args) :])
        return ParseError(f"too many arguments ({code(extra)}); {usage}")
    args: dict[str, str] = {}
    for i, arg in enumerate(command.args):
        if i >= len(values):
            if not arg.optional:
                return ParseError(f"missing {arg.usage()}; {usage}")
            continue
        wrong = _read_arg(arg, values[i], args)
        if wrong:
            return ParseError(f"{wrong}; {usage}")
    return Invocation(command, args)


def _unreadable(text: str, stripped: str) -> ParseError | None:
    """Input no command could be made of: too long, not text, control characters."""
    if len(text) > MAX_INPUT:
        return ParseError(
            f"that message is too long ({len(text)} characters; the limit is {MAX_INPUT})"
        )
    if INVALID in stripped:
        return ParseError(
            "that message has bytes that are not valid UTF-8 text in it; type the command plainly"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\t\n\r " for ch in stripped):
        return ParseError("that message has control characters in it; type the command plainly")
    return None


def _read_arg(arg: Arg, word: str, args: dict[str, str]) -> str:
    """Put ``word`` in ``args`` as ``arg`` (and its ``@ref``); "" when it fits, else why not."""
    value, at, ref = word.partition("@") if arg.at_ref else (word, "", "")
    if not arg.pattern.match(value):
        return f"{code(value)} is not {arg.what}"
    if at and not GIT_REF.match(ref):
        return f"{code(ref)} is not a git ref (a commit, a tag or a branch)"
    args[arg.name] = value
    if at:
        args[REF_ARG] = ref
    return ""
