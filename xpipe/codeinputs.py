"""The xpipe source files a workflow script depends on, found from its imports.

Every Snakemake rule that runs a ``workflow/scripts/*.py`` script must rerun
when any module that script imports changes, directly or through other
modules; otherwise a fix in, say, ``xpipe/sim/area.py`` leaves stale results
behind with nothing to say so. A hand-kept map from rule to modules went stale,
so the Snakefile asks :func:`code_inputs` instead: it parses the script and,
transitively, every ``xpipe`` module it reaches (``ast`` only, nothing is
imported), and lists their source files as the rule's inputs.

Static reading over-includes (imports inside functions or ``if TYPE_CHECKING:``
blocks count) but must never miss a module. It cannot see modules a package
discovers at run time (``pkgutil``); such a package opts in by putting the
comment ``# code-inputs: whole-package`` in its ``__init__.py``, and then every
module of its folder counts as imported. A compiled extension (``xpipe._pagehash``)
maps to its C source (``xpipe/_pagehash.c``).
"""

from __future__ import annotations

import ast
import os
import re
from functools import cache
from pathlib import Path

PACKAGE = "xpipe"
WHOLE_PACKAGE_MARK = "# code-inputs: whole-package"

#: One import as parsed: (level, module or None, imported names); level 0 is absolute.
_Import = tuple[int, str | None, tuple[str, ...]]


def code_inputs(script: str | Path, root: str | Path) -> list[str]:
    """The source files of every ``xpipe`` module ``script`` imports, transitively.

    ``root`` is the project folder holding ``xpipe/``. Every parent package's
    ``__init__.py`` is included (importing ``xpipe.a.b`` runs them), a
    whole-package ``__init__.py`` brings in its whole folder, an extension
    module maps to its ``.c`` file, and names outside ``root/xpipe`` are
    ignored. Returns sorted unique paths relative to the current directory
    (Snakemake compares input paths literally); the script itself is left out.
    """
    script_path = Path(script).resolve()
    root_path = Path(root).resolve()
    modname, is_pkg = None, False  # a script outside the package: relative imports cannot work there
    if script_path.suffix == ".py" and script_path.is_relative_to(root_path / PACKAGE):
        parts = script_path.relative_to(root_path).with_suffix("").parts
        is_pkg = parts[-1] == "__init__"
        modname = ".".join(parts[:-1] if is_pkg else parts)
    files = _closure(str(script_path), modname, is_pkg, str(root_path))
    files.discard(str(script_path))
    return sorted({os.path.relpath(f) for f in files})


def _closure(script: str, modname: str | None, is_pkg: bool, root: str) -> set[str]:
    """Absolute paths of every xpipe file reached from ``script`` (module ``modname`` if in the package)."""
    seen: set[str] = set()
    # Work list of (file, its module name or None, whether it is a package __init__).
    todo: list[tuple[str, str | None, bool]] = [(script, modname, is_pkg)]
    while todo:
        path, modname, is_pkg = todo.pop()
        if not path.endswith(".py"):
            continue  # C source: nothing to follow
        imports, whole = _parse(path, os.stat(path).st_mtime_ns)
        wanted: list[str] = []
        if whole and modname is not None:
            wanted.extend(_submodules(root, modname))
        for level, module, names in imports:
            if level:
                if modname is None:
                    continue
                parts = modname.split(".")
                base_parts = parts if is_pkg else parts[:-1]
                if level - 1 >= len(base_parts):
                    continue
                base = ".".join(base_parts[: len(base_parts) - (level - 1)])
                module = f"{base}.{module}" if module else base
            if module is None or module.split(".")[0] != PACKAGE:
                continue
            wanted.append(module)
            for name in names:
                if name == "*":
                    wanted.extend(_submodules(root, module))
                else:
                    wanted.append(f"{module}.{name}")  # dropped below when it is a name, not a module
        for module in wanted:
            parts = module.split(".")
            for i in range(1, len(parts) + 1):  # parents first: their __init__ runs too
                name = ".".join(parts[:i])
                found = _resolve(root, name)
                if found is None:
                    break
                file, pkg = found
                if file not in seen:
                    seen.add(file)
                    todo.append((file, name, pkg))
    return seen


@cache  # functools.lru_cache without a size bound: once per process
def _resolve(root: str, module: str) -> tuple[str, bool] | None:
    """(file, is a package) of ``module`` under ``root``, or None when it is no file there."""
    base = os.path.join(root, *module.split("."))
    init = os.path.join(base, "__init__.py")
    if os.path.isfile(init):
        return init, True
    for suffix in (".py", ".c"):  # .c: a compiled extension, listed by its source
        if os.path.isfile(base + suffix):
            return base + suffix, False
    return None


def _submodules(root: str, package: str) -> list[str]:
    """Names of the modules and subpackages directly in ``package``'s folder."""
    folder = os.path.join(root, *package.split("."))
    if not os.path.isdir(folder):
        return []
    out = []
    for entry in sorted(os.listdir(folder)):
        full = os.path.join(folder, entry)
        if entry.endswith(".py") and entry != "__init__.py":
            out.append(f"{package}.{entry[:-3]}")
        elif os.path.isfile(os.path.join(full, "__init__.py")):
            out.append(f"{package}.{entry}")
    return out


@cache  # functools.lru_cache without a size bound: once per process
def _parse(path: str, mtime_ns: int) -> tuple[tuple[_Import, ...], bool]:
    """Every import statement anywhere in ``path``, and whether it carries the whole-package mark.

    ``mtime_ns`` is only part of the cache key, so an edited file is parsed again.
    """
    with open(path, encoding="utf-8") as f:
        source = f.read()
    imports: list[_Import] = []
    for node in _import_nodes(source):
        if isinstance(node, ast.Import):
            imports.extend((0, alias.name, ()) for alias in node.names)
        else:
            imports.append((node.level, node.module, tuple(alias.name for alias in node.names)))
    whole = os.path.basename(path) == "__init__.py" and WHOLE_PACKAGE_MARK in source
    return tuple(imports), whole


# ``import`` as a word, with the ``from X`` before it when there is one. It also matches in
# strings and comments: harmless, what is not an import statement does not parse below.
_IMPORT_WORD = re.compile(r"\bfrom\b[\w. \t\\\n]*?\bimport\b|\bimport\b")


def _import_nodes(source: str) -> list[ast.Import | ast.ImportFrom]:
    """The import statements anywhere in ``source`` (module level, functions, ``if`` blocks...).

    Parsing whole files with ``ast.parse`` costs ~1 ms each, too slow for every Snakefile load,
    so this finds each ``import`` word, takes the statement from there (or from its ``from``)
    to the end of its line, continued over open brackets and backslashes, and parses only
    that. Every import statement contains the word, so none is missed; tests compare this
    against a full ``ast.walk`` of every project file.
    """
    nodes: list[ast.Import | ast.ImportFrom] = []
    for m in _IMPORT_WORD.finditer(source):
        starts = (m.start(), m.end() - len("import")) if m.group().startswith("from") else (m.start(),)
        for start in starts:  # a bare ``import`` when ``from X`` before it was not one
            found = _parse_statement(_statement_at(source, start))
            if found:
                nodes.extend(found)
                break
    return nodes


def _statement_at(source: str, pos: int) -> str:
    """The text from ``pos`` to the end of the logical line, comments cut off.

    Import statements hold no strings, so cutting each line at ``#`` is exact for them.
    """
    lines = []
    depth = 0
    while True:
        end = source.find("\n", pos)
        if end < 0:
            end = len(source)
        line = source[pos:end].split("#", 1)[0]
        lines.append(line)
        depth += line.count("(") - line.count(")")
        if (depth <= 0 and not line.rstrip().endswith("\\")) or end == len(source) or len(lines) > 500:
            return "\n".join(lines)
        pos = end + 1


def _parse_statement(text: str) -> list[ast.Import | ast.ImportFrom]:
    """The import nodes of ``text``, or of its part before the first ``;`` if the whole does not parse."""
    for candidate in (text, text.split(";", 1)[0]):
        try:
            tree = ast.parse(candidate)
        except (SyntaxError, ValueError):
            continue
        return [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return []
