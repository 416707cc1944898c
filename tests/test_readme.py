"""The README's two commands are what CI runs, so a missing install step fails CI and not a user."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S)[1]
    commands = [line for line in first_block.splitlines() if line.strip()]
    assert len(commands) == 2 and "pip install" in commands[0] and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci


def test_adding_a_task_guide_shows_the_real_classification_task():
    guide = (ROOT / "docs" / "adding-a-task.md").read_text()
    package = ROOT / "src" / "mobilenets" / "tasks" / "classification"
    source = "\n".join(path.read_text() for path in sorted(package.glob("*.py")))
    blocks = re.findall(r"```python\n(.*?)```", guide, re.S)
    assert len(blocks) == 3 and "class ClassificationTask(Task):" in blocks[0] and "register_task(" in blocks[2]
    for block in blocks:
        assert block in source
