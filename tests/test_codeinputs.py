"""code_inputs: the xpipe files a workflow script imports, checked against real imports."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xpipe import codeinputs
from xpipe.codeinputs import code_inputs

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "workflow" / "scripts").glob("*.py"))

# Runs only the script's top-level imports that mention xpipe, then lists the files of every
# xpipe module they loaded (argv[1]: the script).
PROBE = """
import ast, sys
path = sys.argv[1]
for node in ast.parse(open(path, encoding="utf-8").read()).body:
    if isinstance(node, (ast.Import, ast.ImportFrom)) and "xpipe" in ast.unparse(node):
        exec(compile(ast.Module(body=[node], type_ignores=[]), path, "exec"), {})
for name, module in sorted(sys.modules.items()):
    if name.split(".")[0] == "xpipe" and getattr(module, "__file__", None):
        print(name, module.__file__, sep="\\t")
"""


def loaded_files(script: Path) -> set[Path]:
    """The source files of the xpipe modules the script's imports really load, in a fresh Python."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(script)], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    files = set()
    for line in out.splitlines():
        name, file = line.split("\t")
        path = Path(file).resolve()
        if path.suffix in (".so", ".pyd"):  # compiled extension: its C source, next to it
            path = path.parent / (name.rsplit(".", 1)[-1] + ".c")
        files.add(path)
    return files


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_superset_of_what_the_script_loads(script, monkeypatch):
    monkeypatch.chdir(ROOT)
    loaded = loaded_files(script)
    assert ROOT / "xpipe" / "__init__.py" in loaded, "the probe saw no xpipe import"
    static = {Path(p).resolve() for p in code_inputs(script, ROOT)}
    missing = sorted(str(p.relative_to(ROOT)) for p in loaded - static)
    assert not missing, f"{script.name} loads these but code_inputs misses them"


def test_scripts_exist():
    assert len(SCRIPTS) >= 5


def write_tree(base: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


FAKE = {
    "xpipe/__init__.py": '"""A fake xpipe."""\n',
    "xpipe/errors.py": "class Oops(Exception):\n    pass\n",
    "xpipe/unused.py": "import xpipe.errors\n",
    "xpipe/_fast.c": "/* a compiled extension's source */\n",
    "xpipe/hashing.py": """
        import numpy as np
        import xpipe_extra
        import xpipex

        from . import _fast
        """,
    "xpipe/lazy.py": "from .hashing import digest  # a name, not a module\n",
    "xpipe/typed.py": "X = int\n",
    "xpipe/sub/__init__.py": "from .inner import run\n",
    "xpipe/sub/inner.py": """
        from __future__ import annotations

        import os
        from typing import TYPE_CHECKING

        import xpipe.nothere

        if TYPE_CHECKING:
            from xpipe.typed import X


        def run() -> X:
            from xpipe import lazy
            import xpipe.plugins

            return lazy, xpipe.plugins, os
        """,
    "xpipe/sub/other.py": "from ..errors import Oops\n",
    "xpipe/plugins/__init__.py": """
        # code-inputs: whole-package
        import importlib
        import pkgutil

        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
        """,
    "xpipe/plugins/alpha.py": "from ..errors import Oops\n",
    "xpipe/plugins/beta.py": """
        from xpipe.sub import (
            inner,  # a module (
        )
        """,
    "xpipe/plugins/gamma/__init__.py": "",
    "xpipe/plugins/gamma/deep.py": "import xpipe.unused\n",
    "xpipe_extra.py": "",
    "workflow/scripts/stage.py": """
        import polars as pl

        from xpipe.sub.inner import run

        run()
        """,
}

FAKE_EXPECTED = [
    "xpipe/__init__.py",
    "xpipe/_fast.c",
    "xpipe/errors.py",
    "xpipe/hashing.py",
    "xpipe/lazy.py",
    "xpipe/plugins/__init__.py",
    "xpipe/plugins/alpha.py",
    "xpipe/plugins/beta.py",
    "xpipe/plugins/gamma/__init__.py",
    "xpipe/sub/__init__.py",
    "xpipe/sub/inner.py",
    "xpipe/typed.py",
]


@pytest.mark.parametrize(("cwd", "prefix"), [("proj", ""), ("proj/workflow", "../"), (".", "proj/")])
def test_exact_on_a_fake_package(tmp_path, monkeypatch, cwd, prefix):
    proj = tmp_path / "proj"
    write_tree(proj, FAKE)
    monkeypatch.chdir(tmp_path / cwd)
    got = code_inputs(proj / "workflow/scripts/stage.py", proj)
    assert got == [prefix + p for p in FAKE_EXPECTED]
    # relative arguments mean the same
    assert code_inputs(Path(prefix + "workflow/scripts/stage.py"), prefix or ".") == got


def test_fake_package_follows_edits(tmp_path, monkeypatch):
    write_tree(tmp_path, FAKE)
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "workflow/scripts/stage.py"
    assert "xpipe/unused.py" not in code_inputs(script, tmp_path)
    typed = tmp_path / "xpipe/typed.py"
    typed.write_text("import xpipe.unused\n")
    os.utime(typed, ns=(1, 1))  # a different mtime, however coarse the clock
    assert "xpipe/unused.py" in code_inputs(script, tmp_path)


def test_paths_relative_to_project_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    for script in SCRIPTS:
        got = code_inputs(script, ROOT)
        assert got == sorted(set(got))
        assert "xpipe/__init__.py" in got
        assert str(script.relative_to(ROOT)) not in got
        for p in got:
            assert not p.startswith("/") and not p.startswith(".."), p
            assert Path(p).is_file(), p


def import_set(nodes) -> set[tuple]:
    out = set()
    for n in nodes:
        if isinstance(n, ast.Import):
            out |= {(0, a.name, None) for a in n.names}
        else:
            out |= {(n.level, n.module, a.name) for a in n.names}
    return out


TRICKY = '''
"""Docs: data comes from
import nothing here, from the readers import all."""
import a.b as ab, c  # comment with an open bracket (
from .rel import x; import after_semicolon
x = 1; import after_assignment
import before_string; z = "(#"
if True: import on_if_line
try:
    from d import (e,  # (
        f)
except ImportError: from g \\
    import h
from. import dotted
from .. . import spaced_dots
def f():
    yield from x
    import in_function
'''


@pytest.mark.parametrize(
    "path",
    [*sorted((ROOT / "xpipe").rglob("*.py")), *SCRIPTS, *sorted((ROOT / "tests").glob("*.py")), None],
    ids=lambda p: "tricky" if p is None else str(p.relative_to(ROOT)),
)
def test_fast_scan_finds_every_import_a_full_parse_finds(path):
    source = TRICKY if path is None else path.read_text(encoding="utf-8")
    full = import_set(n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Import, ast.ImportFrom)))
    assert full or path is not None, "nothing to compare"
    assert full <= import_set(codeinputs._import_nodes(source))
