"""The README a newcomer reads: the two commands first, every setting with its default, and CI running the same."""
from __future__ import annotations

import re
from pathlib import Path

from runner.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_make_run_then_make_test():
    commands = re.findall(r"```sh\n(.*?)```", README, re.S)
    assert [c.strip() for c in commands[:2]] == ["make run", "make test"]
    before = README[: README.index("```sh\nmake run")]
    assert "```" not in before, "nothing may be run before `make run`"


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    assert [line for line in script.splitlines() if line and not line.startswith("#") and not line.startswith(("set ", "cd "))] == ["make test"]


def test_every_setting_is_documented_with_its_default():
    missing = []
    for variable, default, _doc in Settings.documented():
        shown = "(empty)" if default == "" else f"`{default}`"
        if not re.search(rf"\|\s*`{variable}`\s*\|\s*{re.escape(shown)}\s*\|", README):
            missing.append(f"{variable} = {shown}")
    assert not missing, f"README lacks these settings or their defaults: {missing}"
