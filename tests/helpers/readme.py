"""README's sections, code blocks and command lines, as the README tests read them."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
SHELL = "(?:bash|sh|console)"


def section(title: str) -> str:
    """README's text under `title` (a `## ` or `### ` heading) up to the next heading."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{title}\n")
    end = re.search(r"\n#{2,3} ", text[start + len(title) + 2 :])
    return text[start : start + len(title) + 2 + end.start()] if end else text[start:]


def blocks(text: str, language: str) -> list[str]:
    """The code blocks of `text` in `language` (a regular expression)."""
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def shell_lines(text: str) -> list[str]:
    """The command lines of `text`'s shell blocks: continued lines joined, comments dropped,
    `&&` chains split."""
    lines = []
    for block in blocks(text, SHELL):
        for line in block.replace("\\\n", " ").splitlines():
            for command in line.split("  #")[0].split("&&"):
                if command.strip():
                    lines.append(command.strip())
    return lines


def commands() -> list[str]:
    """Every `ktemplate ...` command line in README."""
    lines = shell_lines(README.read_text(encoding="utf-8"))
    return [line for line in lines if line.startswith(("ktemplate ", "python -m ktemplate "))]
