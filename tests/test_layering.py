"""The package layers: `checkpoints_convert` imports nothing of jaxrewrite; the core library
(models, model files, the converter, the rewrite engine) imports neither the evaluation worlds
nor the face detectors, even lazily; only the command line reaches up to them."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UPPER = ("jaxrewrite.worlds", "jaxrewrite.faces", "jaxrewrite.cli")  # evaluation, detectors, front end


def imports(path):
    """Every module a file imports, at the top or inside functions, as absolute names."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return out


def test_the_converter_imports_nothing_of_jaxrewrite():
    for path in (ROOT / "checkpoints_convert").glob("*.py"):
        assert not [m for m in imports(path) if m.split(".")[0] == "jaxrewrite"], path.name


def test_the_core_imports_no_world_detector_or_front_end():
    core = [p for p in (ROOT / "jaxrewrite").rglob("*.py")
            if "worlds" not in p.parts and p.name not in ("cli.py", "faces.py", "__main__.py")]
    assert len(core) > 15
    for path in core:
        upward = [m for m in imports(path) if m.startswith(UPPER)]
        assert not upward, (path.relative_to(ROOT), upward)


def test_importing_the_library_loads_no_world():
    code = ("import sys, checkpoints_convert; assert not [m for m in sys.modules if m.startswith('jaxrewrite')]; "
            "import jaxrewrite, jaxrewrite.rewrite.batch; "
            "print(sorted(m for m in sys.modules if m.startswith(('jaxrewrite.worlds', 'jaxrewrite.faces'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]
