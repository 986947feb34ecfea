"""The README stays a five-minute read whose quick start is what CI runs (issue 24 item 7)."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MAX_WORDS = 1500


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_is_short():
    words = len(README.split())
    assert words <= MAX_WORDS, f"README.md has {words} words; the experiment record belongs in docs/results.md"


def test_two_quick_start_commands_and_ci_runs_the_second():
    commands = quick_start_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands), commands
    setup, tests = commands
    assert "pip install -q -e '.[train]'" in setup and "cxredge train" in setup and "cxredge report" in setup
    extras = re.search(r"pip install -q -e '(\.\[[\w,]+\])'", tests).group(1)
    pytest = re.search(r"(\S*python -m pytest[^\n]*)", tests).group(1).split("python", 1)[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"-e '{extras}'" in ci, f"CI does not install {extras}"
    assert re.search(rf"python{re.escape(pytest)}(\s|$)", ci), f"CI does not run `python{pytest}`"


def test_recommended_recipe_is_one_command_with_the_train_options_it_names():
    section = README.split("## Real data", 1)[1].split("\n## ", 1)[0]
    (recipe,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert recipe.strip().startswith("cxredge train ") and "\n" not in recipe.strip()
    from cxredge.cli.train import train

    options = {opt for p in inspect.signature(train).parameters.values()
               for opt in getattr(p.default, "param_decls", ()) if opt.startswith("--")}
    used = set(re.findall(r"(--[\w-]+)", recipe))
    assert used and used <= options, used - options
