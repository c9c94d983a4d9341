"""`fleet completion bash|zsh|fish`: shell completion generated from the argparse parser,
so a new command or flag completes without anyone editing a script."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field

DESCRIPTION = """\
Print a shell completion script for fleet: commands, their subcommands and flags, and the
values of flags and arguments with a fixed set (-o FORMAT, get KIND, ...).

  bash:  source <(fleet completion bash)        # or save it to
                                                # ~/.local/share/bash-completion/completions/fleet
  zsh:   source <(fleet completion zsh)         # after compinit
  fish:  fleet completion fish > ~/.config/fish/completions/fleet.fish"""

SHELLS = ("bash", "zsh", "fish")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("completion", help="shell completion script (bash, zsh, fish)",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    p.set_defaults(handler=run)


@dataclass
class Command:
    """What completes after `fleet NAME`: its words (subcommands, positional choices),
    its flags with their help, and the fixed values of some flags."""

    name: str
    help: str
    words: list[str] = field(default_factory=list)
    flags: list[tuple[list[str], str]] = field(default_factory=list)
    values: dict[str, list[str]] = field(default_factory=dict)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[
        argparse.ArgumentParser] | None:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return a
    return None


def _command(name: str, help_text: str, parser: argparse.ArgumentParser, *,
             nested_flags: bool = True) -> Command:
    cmd = Command(name, help_text)
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            if not nested_flags:
                continue  # the top level: the commands are listed by `bash()`
            cmd.words += sorted(a.choices)
            for nested in a.choices.values():  # `ledger show -o`: flags of any of them
                inner = _command(name, help_text, nested)
                cmd.flags += [f for f in inner.flags if f not in cmd.flags]
                cmd.values.update(inner.values)
        elif not a.option_strings:
            if a.choices is not None:
                cmd.words += [str(c) for c in a.choices]
        elif a.help != argparse.SUPPRESS:
            cmd.flags.append((list(a.option_strings), a.help or ""))
            if a.choices is not None:
                for opt in a.option_strings:
                    cmd.values[opt] = [str(c) for c in a.choices]
    return cmd


def commands(parser: argparse.ArgumentParser) -> list[Command]:
    """The top level (name "") and every command, in `fleet --help` order."""
    out = [_command("", parser.description or "", parser, nested_flags=False)]
    sub = _subparsers(parser)
    if sub is not None:
        helps = {c.dest: c.help or "" for c in sub._choices_actions}
        for name, p in sub.choices.items():
            out.append(_command(name, helps.get(name, ""), p))
    return out


def bash(cmds: list[Command]) -> str:
    top = cmds[0]
    words = " ".join([c.name for c in cmds[1:]] + [f for fs, _ in top.flags for f in fs])
    cases, value_cases = [], []
    for c in cmds[1:]:
        opts = " ".join(c.words + [f for fs, _ in c.flags for f in fs])
        cases.append(f"        {shlex.quote(c.name)}) opts={shlex.quote(opts)} ;;")
        for opt, vals in sorted(c.values.items()):
            value_cases.append(f"        {shlex.quote(c.name + ':' + opt)}) "
                               f"COMPREPLY=($(compgen -W {shlex.quote(' '.join(vals))} "
                               '-- "$cur")); return 0 ;;')
    return "\n".join([
        "# fleet completion for bash: source <(fleet completion bash)",
        "_fleet() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local cmd="" i opts=""',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in',
        "            -*) ;;",
        '            *) cmd="${COMP_WORDS[i]}"; break ;;',
        "        esac",
        "    done",
        '    case "$cmd:$prev" in',
        *value_cases,
        "    esac",
        '    case "$cmd" in',
        f"        '') opts={shlex.quote(words)} ;;",
        *cases,
        "    esac",
        '    COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
        "}",
        "complete -F _fleet fleet",
        "",
    ])


def zsh(cmds: list[Command]) -> str:
    # zsh runs bash completion functions through bashcompinit: one script to keep right.
    return "\n".join([
        "#compdef fleet",
        "# fleet completion for zsh: source <(fleet completion zsh), after compinit",
        "autoload -U +X bashcompinit && bashcompinit",
        bash(cmds),
    ])


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish(cmds: list[Command]) -> str:
    lines = ["# fleet completion for fish: fleet completion fish > "
             "~/.config/fish/completions/fleet.fish", "complete -c fleet -f"]
    for c in cmds[1:]:
        lines.append(f"complete -c fleet -n __fish_use_subcommand -a {_fish_quote(c.name)}"
                     f" -d {_fish_quote(c.help.splitlines()[0] if c.help else '')}")
    for c in cmds[1:]:
        cond = _fish_quote(f"__fish_seen_subcommand_from {c.name}")
        if c.words:
            lines.append(f"complete -c fleet -n {cond} -a {_fish_quote(' '.join(c.words))}")
        for flags, help_text in c.flags:
            spec = []
            for f in flags:
                if f.startswith("--"):
                    spec.append(f"-l {_fish_quote(f[2:])}")
                elif len(f) == 2:
                    spec.append(f"-s {_fish_quote(f[1:])}")
                else:
                    spec.append(f"-o {_fish_quote(f[1:])}")
            vals = next((c.values[f] for f in flags if f in c.values), None)
            extra = f" -xa {_fish_quote(' '.join(vals))}" if vals else ""
            short_help = " ".join(help_text.split())[:80]
            lines.append(f"complete -c fleet -n {cond} {' '.join(spec)}"
                         f" -d {_fish_quote(short_help)}{extra}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from controllers.cli import build_parser

    cmds = commands(build_parser())
    sys.stdout.write({"bash": bash, "zsh": zsh, "fish": fish}[args.shell](cmds))
    return 0
