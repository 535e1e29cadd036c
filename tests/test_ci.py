"""CI runs the README's test command verbatim, and both README commands install through
the lock, so that CI and a fresh machine get what was tested."""

from __future__ import annotations

import re

from conftest import ROOT


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [c.strip() for c in re.findall(r"```sh\n(python3 -m venv .*?)\n```", text)]


def test_the_readme_has_two_setup_commands_through_the_lock() -> None:
    """Exactly two set-up commands, each installing with `-c requirements.lock`."""
    cmds = readme_commands()
    assert len(cmds) == 2
    assert all("pip install -q -c requirements.lock " in c for c in cmds)
    assert "tiffsink run --config config.toml" in cmds[0] and "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """.ci/run contains the README's test command as one line."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_the_lock_pins_every_dependency_of_pyproject() -> None:
    """Every dependency named in pyproject.toml (test extras too) has an exact pin."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    names = {re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in wanted}
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith(("#", " "))
    )
    pinned = {n.strip().lower().replace("_", "-") for n in pins}
    assert names - pinned == set()
