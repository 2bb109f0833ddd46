from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


class TestReadme:
    def test_the_quick_start_runs(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The README's quick start runs as written and prints what it promises."""
        blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
        assert blocks, "the README has no python block"
        exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme"})  # noqa: S102 - our own README
        out = capsys.readouterr().out
        assert "CreateUser success" in out
        assert "ada@example.com" in out

    def test_the_two_commands(self) -> None:
        """The README gives the demo and test commands a newcomer with Python and pip can run."""
        text = README.read_text(encoding="utf-8")
        assert "python3 -m pip install nox && python3 -m nox -s demo" in text
        assert "python3 -m pip install nox && python3 -m nox -s tests" in text
