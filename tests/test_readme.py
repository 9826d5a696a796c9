"""The README's fresh-machine test command is what CI runs."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)
    demo, tests = blocks[0], blocks[1]
    assert "polymodal demo" in demo and "torch==2.13.0" in demo
    assert "pytest" in tests and tests in (REPO / ".ci/run").read_text()
