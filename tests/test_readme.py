"""The README stays true: its Python examples run, and what its tables list exists."""

import pathlib
import re

import pytest

import gradtx as gtx

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text()


def python_blocks():
  """Each ```python block of the README with the line it starts on."""
  return [(TEXT.count("\n", 0, m.start()) + 2, m.group(1))
          for m in re.finditer(r"^```python\n(.*?)^```", TEXT, re.S | re.M)]


def test_readme_has_python_examples():
  assert python_blocks()


@pytest.mark.parametrize("line,code", python_blocks(),
                         ids=[f"line{line}" for line, _ in python_blocks()])
def test_python_block_runs(line, code, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})


def listed_names():
  """The ``gtx`` names in the first column of the README's tables."""
  names = set()
  for row in re.findall(r"^\| *(.+?) *\|", TEXT, re.M):
    names.update(re.findall(r"`(?:gtx\.)?([A-Za-z_][A-Za-z0-9_.]*)[(`]", row))
  return sorted(names)


def test_every_listed_name_is_in_the_package():
  assert listed_names()
  missing = []
  for name in listed_names():
    obj = gtx
    for part in name.split("."):
      obj = getattr(obj, part, None)
    if obj is None:
      missing.append(name)
  assert not missing, f"README lists names that gradtx does not export: {missing}"
