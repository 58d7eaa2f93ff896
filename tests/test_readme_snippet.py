"""The README's bring-your-own-model snippet runs exactly as printed."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _snippet():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    match = re.search(r"<!-- snippet: byo-model.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "the README lost its byo-model snippet"
    return match.group(1)


def test_readme_snippet_runs(capsys):
    code = _snippet()
    assert "DynamicSparsity" in code and "model.fit" in code
    assert len(code.strip().splitlines()) <= 20
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    density = float(re.search(r"density ([0-9.]+)", printed).group(1))
    assert 0.15 < density < 0.3  # FB+ may prune a little more than the 0.2 it started from
    assert namespace["model"].history.history["loss"]
