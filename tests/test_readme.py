"""The README's usage example runs as written."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_engine_example_runs():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("<!-- section:engine -->"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    import srm_jax

    score = float(srm_jax.alignment_score(namespace["result"], namespace["reference"]))
    assert score > 0.5


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert "python -m train" in first_block
    assert "python -m pytest -q tests" in first_block
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m pytest -q tests" in ci
