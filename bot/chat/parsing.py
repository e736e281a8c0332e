"""Turning chat text into a command and its arguments, or a clear, short error.

Deliberately simple: whitespace-separated words, no quoting, no shell. Every argument must
match its declared pattern (ASCII names only), so ``dev; rm -rf /``, ``../etc/passwd`` and
look-alike unicode never get past here, and errors echo input only through ``chat.code``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass

from bot.core.ids import GIT_REF
from bot.core.replies import INVALID, code
from commands.base import REF_ARG, Arg, Command

MAX_INPUT = 1000
# ``prod:`` or ``prod:dev`` as a command's first word names the swarm (bots of several).
_SWARM_WORD = re.compile(r"^([a-z][a-z0-9-]{0,31}):([A-Za-z0-9_.@-]*)$")


@dataclass(frozen=True)
class Invocation:
    command: Command
    args: dict[str, str]
    # A schedulable command's ``at 22:00`` / ``in 2h``: ("at", "22:00"); None: at once.
    schedule: tuple[str, str] | None = None
    # ``--now`` (outside its deploy window, after a confirmation) or ``--when-open``.
    window: str = ""
    # ``!deploy prod:dev``, ``!services staging:``: the swarm named ("" names none).
    swarm: str = ""


@dataclass(frozen=True)
class ParseError:
    message: str


def parse(
    text: str, prefix: str, registry: dict[str, Command], swarms: Collection[str] = ()
) -> Invocation | ParseError | None:
    """``None`` when the text is not addressed to the bot (no prefix): say nothing then.
    ``swarms``: the names of [swarms]; a first argument ``<swarm>:<rest>`` names one."""
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
    named = _swarm_named(words[1:], swarms)
    if isinstance(named, ParseError):
        return named
    swarm, values = named
    usage = f"usage: {command.usage(prefix)}"
    schedule, window = None, ""
    if command.schedulable:
        values, schedule, window = _timing(values)
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
    return Invocation(command, args, schedule, window, swarm)


def _swarm_named(values: list[str], swarms: Collection[str]) -> tuple[str, list[str]] | ParseError:
    """(the swarm named, the arguments without it): ``prod:dev`` as the first argument
    names swarm ``prod`` and leaves ``dev``, ``prod:`` leaves nothing; ("", ``values``)
    when none is named; the error for a swarm-like name that is not one of ``swarms``."""
    match = _SWARM_WORD.match(values[0]) if swarms and values else None
    if match is None:
        return "", values
    name, rest = match.groups()
    if name not in swarms:
        known = ", ".join(sorted(swarms))
        return ParseError(f"unknown swarm {code(name)} (known: {known})")
    return name, [rest, *values[1:]] if rest else values[1:]


def _timing(values: list[str]) -> tuple[list[str], tuple[str, str] | None, str]:
    """Take ``--now`` / ``--when-open`` and a trailing ``at <time>`` / ``in <duration>``
    off a schedulable command's words."""
    flags = [v for v in values if v in ("--now", "--when-open")]
    values = [v for v in values if v not in ("--now", "--when-open")]
    schedule = None
    if len(values) >= 2 and values[-2].lower() in ("at", "in"):
        schedule = (values[-2].lower(), values[-1])
        values = values[:-2]
    return values, schedule, flags[-1].removeprefix("--") if flags else ""


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
