"""What a person reads from a command's parser: a short ``--help``, plain text, "did you mean".

jsonargparse documents every class-typed option with all of its known subclasses (an
``nn.Module`` argument lists about 1,400) and prints the whole Lightning Trainer, so a
LightningCLI's help runs to thousands of lines. :func:`install` makes a parser print a
compact help instead (the command's own options, the Trainer options people set, each
class option as "a class path; ``--KEY.help CLASS`` for its options", docstring markup
removed); ``multispike <command> --help full`` prints everything. A misspelt option or
config key gets the closest known names.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import textwrap
from typing import Any

__all__ = ["FULL_HELP_VAR", "compact_help", "did_you_mean", "explain", "install", "plain"]

FULL_HELP_VAR = "MULTISPIKE_FULL_HELP"

# Lightning's options worth a line in the compact help; the rest are in --help full.
KEPT = {
    "--trainer.": {
        "accelerator", "devices", "num_nodes", "strategy", "precision", "max_epochs",
        "max_steps", "limit_train_batches", "limit_val_batches", "callbacks", "logger",
        "default_root_dir", "enable_progress_bar",
    },
    "--checkpoint.": {"dirpath", "monitor", "mode", "save_top_k"},
}  # fmt: skip
_WIDTH, _INDENT = 100, 24
_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_SUBCLASSES = re.compile(r",?\s*known subclasses:[^)]*")


def plain(text: str) -> str:
    """Docstring markup as plain text: ``:func:`a.b` `` → ``a.b``, double backquotes removed."""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


def _entries(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Split help lines into ``(kind, lines)`` blocks: ``option``, ``header`` or ``text``."""
    blocks: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("  -"):
            blocks.append(("option", [line]))
        elif line.startswith(" " * 4) and blocks and blocks[-1][0] == "option":
            blocks[-1][1].append(line)
        elif line and not line.startswith(" "):
            blocks.append(("header", [line]))
        else:
            blocks.append(("text", [line]))
    return blocks


def _keep(option: str) -> bool:
    name = option.split()[0].split(",")[0]
    if name.endswith(".help"):
        return False
    for prefix, kept in KEPT.items():
        if name.startswith(prefix):
            return name.removeprefix(prefix).split(".")[0] in kept
    return True


def _shorten(body: str) -> str:
    """The first sentence of a description and its default (types are in --help full)."""
    meta = max(body.rfind(" (type: "), body.rfind(" (required"), body.rfind(" (default: "))
    default = ""
    if meta > 0 and body.endswith(")"):
        tail = body[meta:]
        found = re.search(r"default: (.*)\)$", tail)
        default = " [required]" if tail.startswith(" (required") else ""
        default = f" [default: {found.group(1)}]" if found and not default else default
        body = body[:meta].rstrip()
    return _first_sentence(body) + default


def _first_sentence(text: str) -> str:
    """``text`` up to the first ``. `` before a capital or a parenthesis that is not inside
    parentheses itself (``nir (the graph. SNN folders only)`` stays whole)."""
    for end in re.finditer(r"(?<!e\.g\.)(?<!i\.e\.)(?<=\.)\s(?=[A-Z(])", text):
        head = text[: end.start()]
        if head.count("(") <= head.count(")"):
            return head
    return text


def _option(lines: list[str]) -> list[str]:
    """One option entry, its class lists cut and its description re-wrapped."""
    head, *rest = lines
    body = ""
    for line in (line.strip() for line in rest):  # argparse wrapped at hyphens: undo it
        body += line if re.search(r"\w-$", body) else f" {line}"
    body = body.strip()
    same_line = re.match(r"^(  \S.*?)\s{2,}(\S.*)$", head)
    if same_line:  # the description starts on the option's own line
        head, body = same_line.group(1), f"{same_line.group(2)} {body}"
    body = _shorten(plain(_SUBCLASSES.sub("", body)).strip())
    if not body:
        return [head]
    wrapped = textwrap.wrap(body, _WIDTH - _INDENT, break_on_hyphens=False)
    if len(head) < _INDENT - 1:
        return [head.ljust(_INDENT) + wrapped[0], *(" " * _INDENT + w for w in wrapped[1:])]
    return [head, *(" " * _INDENT + w for w in wrapped)]


def compact_help(text: str, prog: str) -> str:
    """The help ``text`` of ``prog`` without the usage synopsis, rarely set Trainer options,
    ``--KEY.help`` entries, class lists and docstring markup."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if not line.strip()), 0)
    takes = [o for o in ("--config FILE.yaml", "--print_config") if o.split()[0] + " " in text]
    out = [" ".join(["usage:", prog, *(f"[{o}]" for o in takes), "[--KEY VALUE ...]"])]
    for kind, block in _entries(lines[start:]):
        if kind == "option":
            if _keep(block[0]):
                out += _option(block)
        elif kind == "header":
            out.append(plain(block[0]) if len(block[0]) <= _WIDTH else plain(block[0])[:97] + "...")
        else:
            out += [plain(line) for line in block]
    out += [
        "",
        f"Class options take a class path or a short name (--data CIFAR10DataModule); "
        f"'{prog} --KEY.help CLASS' lists a class's options.",
        f"'{prog} --help full' shows every option, the whole Lightning Trainer included.",
    ]
    squeezed = re.sub(r"\n{3,}", "\n\n", "\n".join(out))
    return squeezed + "\n"


def _known_options(parser: Any) -> list[str]:
    return [s for action in parser._actions for s in action.option_strings if s.startswith("--")]


def did_you_mean(message: str, known: list[str]) -> str:
    """`` (did you mean --levels?)`` for the unknown options or keys named in ``message``."""
    asked = re.findall(r"(--[\w.\-]+)", message)
    asked += ["--" + k for k in re.findall(r"[Kk]ey '([\w.\-]+)'", message)]
    asked += ["--" + k for k in re.findall(r"nested key '([\w.\-]+)'", message)]
    asked += [
        f"--{group}.{name}"
        for group, name in re.findall(
            r"Group '([\w.\-]+)' does not accept option '([\w.\-]+)'", message
        )
    ]
    hints = []
    for option in dict.fromkeys(asked):
        if option in known:
            continue
        tail = option.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(option, known, n=3, cutoff=0.7)
        close = close or [k for k in known if k.rsplit(".", 1)[-1] == tail][:3]
        if close:
            hints.append(f"{option}: did you mean {' or '.join(close)}?")
    return f" ({'; '.join(hints)})" if hints else ""


def explain(message: str) -> str | None:
    """One line for the parse errors people make most, or ``None`` (keep jsonargparse's text):
    a DataModule name misspelt, an option its class lacks, a value outside a fixed choice."""
    key = re.match(r'Parser key "([\w.]+)"', message)
    given = re.search(r"(?:Given|Got) value: (.*)$", message.strip())
    path = re.search(r"Expected a dot import path string: (\S+)", message)
    if key and path:  # a class option given something that is no class path
        asked, k = path.group(1), key.group(1)
        if k == "data":
            from . import data

            names = [n for n in data.__all__ if n.endswith("DataModule")]
            names = [n for n in names if not n.startswith(("Classification", "Event"))]
            return (
                f"--data {asked}: no such DataModule{_closest(asked, names)}; known: "
                f"{', '.join(names)} or a class path (package.module.Class)"
            )
        import timm

        if timm.is_model(asked):
            return (
                f"--{k} {asked}: a network is given by its loader, --{k} multispike.zoo.load_model "
                f"--{k}.model_name {asked} (and --{k}.pretrained true for its weights)"
            )
        return f"--{k} {asked}: not a class path (package.module.Class) or YAML file"
    option = re.search(r"class_path '([\w.]+)':\s*Option '(\w+)' is not accepted", message)
    if key and option:
        group, (cls, name) = key.group(1), option.groups()
        if cls.rsplit(".", 1)[-1] in ("LightningDataModule", "LightningModule"):
            return (
                f"--{group}.{name}: name the class first, e.g. --{group} CLASS --{group}.{name} V"
            )
        close = _closest(name, _init_options(cls), prefix=f"--{group}.")
        return f"--{group}.{name}: {cls.rsplit('.', 1)[-1]} has no option {name!r}{close}"
    literals = re.findall(r"Literal\[([^\]]*)\]", message)
    allowed = list(dict.fromkeys(a for g in literals for a in re.findall(r"'([^']*)'", g)))
    value = given.group(1).strip() if given else ""
    if key and allowed and value and not value.startswith(("[", "{")):  # a plain value
        hint = _closest(value, allowed)
        return f"--{key.group(1)} {value}: must be one of {', '.join(allowed)}{hint}"
    return None


def _closest(asked: str, known: list[str], prefix: str = "") -> str:
    """`` (did you mean X?)`` for the known name closest to ``asked``, case aside; or ``""``."""
    lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(asked.lower(), list(lower), n=1, cutoff=0.6)
    return f" (did you mean {prefix}{lower[close[0]]}?)" if close else ""


def _init_options(class_path: str) -> list[str]:
    """The keyword arguments ``class_path`` takes: a class's constructors along its bases, or a
    function's (``multispike.zoo.load_model``)."""
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    try:
        target = getattr(importlib.import_module(module), name)
        inits = (
            [k.__dict__["__init__"] for k in target.__mro__ if "__init__" in k.__dict__]
            if isinstance(target, type)
            else [target]  # a function: its own arguments
        )
        names = [p for init in inits for p in inspect.signature(init).parameters]
    except (ImportError, AttributeError, TypeError, ValueError):
        return []
    return list(dict.fromkeys(n for n in names if n not in ("self", "args", "kwargs")))


def install(parser: Any) -> Any:
    """Give ``parser`` (jsonargparse) the compact help and the "did you mean" errors."""
    full_help = parser.format_help

    def format_help() -> str:
        text = full_help()
        if os.environ.get(FULL_HELP_VAR) == "1":
            return plain(text)
        return compact_help(text, parser.prog)

    original_error = parser.error

    def error(message: str, ex: Exception | None = None):
        if not parser.exit_on_error:
            return original_error(message, ex)
        short = explain(message)
        hint = "" if short else did_you_mean(message, _known_options(parser))
        sys.stderr.write(
            f"{parser.prog}: error: {short or plain(message)}{hint}\n"
            f"  ('{parser.prog} --help' lists the options)\n"
        )
        parser.exit(2)

    parser.format_help = format_help
    parser.error = error
    return parser
