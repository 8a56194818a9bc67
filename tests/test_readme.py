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
    lines = first_block.splitlines()
    assert ('pip install -e ".[data]" && python -m train fig1 --dataset mnist5k --epochs 100 '
            '--out runs/fig1') in lines
    assert 'pip install -e ".[test,data]" && python -m pytest -q tests' in lines
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m pytest -q tests" in ci


README_MAX_LINES = 250
# The docs pages whose first python block runs as written (and quickly); the other pages' blocks
# are fragments of a larger program (a model, batches) or take tens of seconds (analysis).
RUNNABLE_DOCS = ("engine.md", "bases.md")
DOCS_PAGES = ("engine.md", "bases.md", "experiments.md", "analysis.md", "integration.md",
              "benchmarks.md", "math.md")


def test_readme_is_short_and_maps_the_docs():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    for page in DOCS_PAGES:
        assert f"](docs/{page})" in text, page
        assert (ROOT / "docs" / page).exists(), page
    # The summary sections, each pointing to its docs page.
    for section, page in (("accelerators", "accelerators.md"), ("reproduction", "reproduction.md")):
        body = text.split(f"<!-- section:{section} -->", 1)[1].split("<!-- section:", 1)[0]
        assert f"](docs/{page})" in body, section
        assert (ROOT / "docs" / page).exists(), page


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_heading_anchor_follows_github():
    assert heading_anchor("5.1 Which planes a sample can light") == (
        "51-which-planes-a-sample-can-light")
    assert heading_anchor("6. Isotropic expectation and significance") == (
        "6-isotropic-expectation-and-significance")


def test_local_links_of_readme_and_docs_exist():
    for path in [ROOT / "README.md", *(ROOT / "docs" / p for p in DOCS_PAGES),
                 ROOT / "benchmarks" / "RESULTS.md"]:
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
            if target.startswith(("http", "#")):
                continue
            target, _, anchor = target.partition("#")
            assert (path.parent / target).exists(), (path.name, target)
            if anchor and target.endswith(".md"):
                headings = re.findall(r"^#+ (.*)$", (path.parent / target).read_text(), re.M)
                assert anchor in {heading_anchor(h) for h in headings}, (path.name, target, anchor)


def test_docs_code_blocks_run():
    import matplotlib

    matplotlib.use("Agg")
    for page in RUNNABLE_DOCS:
        code = re.search(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S).group(1)
        exec(compile(code, f"docs/{page}", "exec"), {})


def test_readme_report_command_parses():
    from srm_jax import cli

    text = (ROOT / "README.md").read_text()
    section = text[text.index("<!-- section:report -->"):text.index("<!-- section:engine -->")]
    assert "safetensors.torch import save_file" in section and "register_forward_hook" in section
    commands = [line for line in re.findall(r"```bash\n(.*?)```", section, re.S)[0].splitlines()
                if line.startswith("srm-jax ")]
    assert commands
    for command in commands:
        args = cli.build_parser().parse_args(command.split()[1:])
        assert args.command == "report"
        assert all(a.endswith((".safetensors", "/")) for a in args.activations)


def test_readme_capture_code_is_the_example_script():
    """The README's PyTorch code is the marked core of examples/capture_activations.py, verbatim
    (one code: the script runs what the README shows)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("<!-- section:report -->"):text.index("<!-- section:engine -->")]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = (ROOT / "examples" / "capture_activations.py").read_text()
    core = script.split("# [readme-start]\n", 1)[1].split("# [readme-end]\n", 1)[0]
    assert block == core
    compile(block, "README.md", "exec")
    assert "def capture(" in block
    assert 'pip install -e ".[capture]"' in section
    assert "python examples/capture_activations.py --out acts/" in section
