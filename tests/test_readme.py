"""The README's worked examples run exactly as written and print the model they fitted."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = re.compile(r"<!-- readme-example: (\w+) -->\s*```python\n(.*?)```", re.S)


def examples() -> dict[str, str]:
    return dict(MARKER.findall(README.read_text()))


def test_readme_has_the_four_worked_examples():
    assert list(examples()) == ["final_losses", "checkpoint_ladder", "downstream", "uncertainty"]


#: The uncertainty example (an automatic model choice, then the variance parts, a
#: preposterior and a family comparison: 160-190 s on 2 cores) runs in the slow tier; each of
#: its calls has its own default-tier tests (test_model_choice, test_uncertainty,
#: test_advisor, test_decisions).
@pytest.mark.parametrize("name", ["final_losses", "checkpoint_ladder", "downstream",
                                  pytest.param("uncertainty", marks=pytest.mark.slow)])
def test_readme_example_runs_as_written(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(examples()[name], f"README.md:{name}", "exec"), {"__name__": "__readme__"})
    text = out.getvalue()
    if name == "uncertainty":  # the automatic model, then the four tables
        assert "chosen automatically" in text and "family_pooling" in text, text[:500]
        assert all(column in text for column in ("law_var", "band_width_after", "p_best"))
        return
    preset = {"final_losses": "chinchilla", "checkpoint_ladder": "checkpoints",
              "downstream": "downstream"}[name]
    assert f"model '{preset}'" in text and "law    chinchilla" in text, text[:500]
    assert "median" in text
