# SPDX-License-Identifier: MIT
"""Notebooks stored as text (issue 12, point 5): jupytext's percent format
(`.py` with `# %%` cells) and MyST Markdown (`.md` with ```{code-cell}
blocks) run as notebooks: `apyrun nb.md`, `apyrun --notebook nb.py`, or a
`.py` whose jupytext header says percent; `-o out.ipynb` writes the
executed .ipynb. Each file's cells are read as jupytext reads them (the
cells of the .ipynb jupytext made from the text are written out here by
hand), tracebacks name the text's own lines, and the outputs are the ones
Jupyter records for the same cells (nbconvert on the equivalent .ipynb).
A text notebook is never written over."""
import importlib.util
import json

import pytest

from conftest import (REF_PYTHON, cell, child_env, read_valid, run,
                      write_nb)

HAVE_JUPYTER = (importlib.util.find_spec("nbconvert") is not None
                and importlib.util.find_spec("ipykernel") is not None)

HEADER = """\
# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---
"""

PERCENT = HEADER + '''
# %% [markdown]
# # A title
# some *text*
#
# more

# %% tags=["parameters"]
alpha = 1

# %%
# !echo from the shell
# %env TEXT_NB=5
import os
print(alpha, os.environ['TEXT_NB'])
alpha * 2

# %% Title {"tags": ["raises-exception"]}
1 / 0

# %%
s = """
# %% inside a string: not a marker
"""
print(s.strip())


# %% [raw]
# raw text

# %% language="bash"
# echo from bash

#%% key=value
print('a cell whose options do not read')
'''

# The cells jupytext makes of PERCENT (its rules: cell_reader.py).
PERCENT_CELLS = [
    ("markdown", "# A title\nsome *text*\n\nmore", None),
    ("code", "alpha = 1", ["parameters"]),
    ("code", "!echo from the shell\n%env TEXT_NB=5\nimport os\n"
             "print(alpha, os.environ['TEXT_NB'])\nalpha * 2", None),
    ("code", "1 / 0", ["raises-exception"]),
    ("code", 's = """\n# %% inside a string: not a marker\n"""\n'
             "print(s.strip())", None),
    ("raw", "raw text", None),
    ("code", "%%bash\necho from bash", None),
    ("code", "print('a cell whose options do not read')", None),
]

MYST = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Title

Some text

```{code-cell} ipython3
:tags: [parameters]

beta = 2
```

More *md*

+++ {"slideshow": {"slide_type": "slide"}}

Next md
+++
Third

```{code-cell} ipython3
---
tags: [raises-exception]
other:
  nested: true
---
beta / 0
```

```{raw-cell}
raw *text*
```

````{code-cell} ipython3
print('''
```
''')
````

```python
not_a_cell = 1
```

```{code-cell}
%%bash
echo from bash
```

```{code-cell} ipython3
[beta] * 3
```
"""

MYST_CELLS = [
    ("markdown", "# Title\n\nSome text", None),
    ("code", "beta = 2", ["parameters"]),
    ("markdown", "More *md*", None),
    ("markdown", "Next md", None),
    ("markdown", "Third", None),
    ("code", "beta / 0", ["raises-exception"]),
    ("raw", "raw *text*", None),
    ("code", "print('''\n```\n''')", None),
    ("markdown", "```python\nnot_a_cell = 1\n```", None),
    ("code", "%%bash\necho from bash", None),
    ("code", "[beta] * 3", None),
]


def cells_of(nb):
    return [(c.cell_type, c.source, c.metadata.get("tags"))
            for c in nb.cells]


def code_outputs(nb):
    """Each code cell's outputs, as the differential test compares them."""
    got = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        outs = []
        for o in c.outputs:
            if o.output_type == "stream":
                if outs and outs[-1][:2] == ("stream", o.name):
                    outs[-1] = ("stream", o.name, outs[-1][2] + o.text)
                else:
                    outs.append(("stream", o.name, o.text))
            elif o.output_type == "error":
                outs.append(("error", o.ename))
            else:
                outs.append((o.output_type, o.data.get("text/plain")))
        got.append((c.execution_count, outs))
    return got


@pytest.mark.parametrize("name,text,want", [
    ("nb.py", PERCENT, PERCENT_CELLS), ("nb.md", MYST, MYST_CELLS)])
def test_cells_as_jupytext_reads_them(apyrun, tmp_path, name, text, want):
    src = tmp_path / name
    src.write_text(text)
    out = tmp_path / "out.ipynb"
    r = run([apyrun, src, "-o", out], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = read_valid(out)
    assert cells_of(got) == want
    assert got.metadata.kernelspec.name == "python3"
    assert got.nbformat == 4 and got.nbformat_minor == 5


@pytest.mark.skipif(not HAVE_JUPYTER, reason="nbconvert or ipykernel is "
                    "not installed (python3-nbconvert python3-ipykernel)")
@pytest.mark.parametrize("name,text,want", [
    ("nb.py", PERCENT, PERCENT_CELLS), ("nb.md", MYST, MYST_CELLS)])
def test_same_outputs_as_jupyter(apyrun, tmp_path, name, text, want):
    """The text through apyrun; the .ipynb of its cells through
    nbconvert and ipykernel."""
    (tmp_path / "a").mkdir()
    (tmp_path / "j").mkdir()
    src = tmp_path / "a" / name
    src.write_text(text)
    out = tmp_path / "a" / "out.ipynb"
    r = run([apyrun, src, "-o", out], cwd=src.parent)
    assert r.returncode == 0, r.stderr
    ref = write_nb(tmp_path / "j" / "nb.ipynb",
                   [cell(s, tags=t, kind=k) for k, s, t in want])
    r = run([REF_PYTHON, "-m", "nbconvert", "--to", "notebook", "--execute",
             "--output", "out.ipynb", ref], cwd=ref.parent,
            env=child_env(), timeout=180)
    assert r.returncode == 0, r.stderr
    assert code_outputs(read_valid(out)) == code_outputs(
        read_valid(ref.parent / "out.ipynb"))


def test_tracebacks_name_the_text_lines(apyrun, tmp_path):
    py = tmp_path / "nb.py"
    py.write_text(HEADER + "\n# %%\nx = 1\n\n# %%\n\ny = 2\nraise "
                  "ValueError('here')\n")
    r = run([apyrun, py], cwd=tmp_path)
    assert r.returncode == 1
    line = py.read_text().splitlines().index("raise ValueError('here')")
    assert f'File "{py}", line {line + 1}' in r.stderr
    md = tmp_path / "nb.md"
    md.write_text("# md\n\n```{code-cell}\n:tags: [a]\nx = 1\nundefined\n"
                  "```\n")
    r = run([apyrun, md], cwd=tmp_path)
    assert r.returncode == 1
    assert f'File "{md}", line 6' in r.stderr


def test_which_py_is_a_notebook(apyrun, tmp_path):
    """A .py runs as a script, as python3 runs it, unless --notebook or
    jupytext's header says percent; --notebook takes one without."""
    plain = "# %%\nprint('one')\n# %%\nprint('two')\n"
    (tmp_path / "s.py").write_text(plain)
    r = run([apyrun, "s.py", "-o", "x.ipynb"], cwd=tmp_path)
    # A script: "-o x.ipynb" are its arguments.
    assert (r.returncode, r.stdout) == (0, "one\ntwo\n")
    assert not (tmp_path / "x.ipynb").exists()
    r = run([apyrun, "--notebook", "s.py", "-o", "x.ipynb"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [c.source for c in read_valid(tmp_path / "x.ipynb").cells] == [
        "print('one')", "print('two')"]
    (tmp_path / "h.py").write_text(HEADER + "\n" + plain)
    r = run([apyrun, "h.py", "-o", "y.ipynb", "--", "arg"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(read_valid(tmp_path / "y.ipynb").cells) == 2


def test_a_text_notebook_is_never_written_over(apyrun, tmp_path):
    py = tmp_path / "nb.py"
    py.write_text(HEADER + "\n# %%\nprint('ran')\n")
    before = py.read_bytes()
    (tmp_path / "link.ipynb").symlink_to(py)
    for args in (["--inplace"], ["-o", "nb.py"], ["-o", "./nb.py"],
                 ["-o", "link.ipynb"], ["--check-outputs"]):
        r = run([apyrun, *args, "nb.py"], cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert "ran" not in r.stdout
        assert r.stderr.startswith("apyrun: ")
        assert py.read_bytes() == before


@pytest.mark.parametrize("text,message", [
    ("hello\n", "not a MyST notebook"),
    ("```{code-cell}\n:tags: [unclosed\nx\n```\n",
     "code cell 1 at line 1: invalid YAML"),
    ("---\nkernelspec: [\n---\n```{code-cell}\nx\n```\n",
     "notebook metadata: invalid YAML (line 2)"),
    ("+++ {not json}\n```{code-cell}\nx\n```\n",
     "line 1: the metadata after +++ is not a JSON object"),
    ("---\nkernelspec:\n  name: ir\n  language: R\n  display_name: R\n"
     "---\n```{code-cell}\nx\n```\n", "kernel language is 'R'"),
])
def test_bad_myst_is_a_clear_error(apyrun, tmp_path, text, message):
    md = tmp_path / "bad.md"
    md.write_text(text)
    r = run([apyrun, md], cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith(f"apyrun: {md}: ")
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_parameters_and_batch_options_work_on_text(apyrun, tmp_path):
    """-p injects after the cell tagged parameters, as for an .ipynb."""
    py = tmp_path / "nb.py"
    py.write_text(PERCENT)
    out = tmp_path / "out.ipynb"
    r = run([apyrun, py, "-o", out, "-p", "alpha", "21"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = read_valid(out)
    injected = [c for c in got.cells
                if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    third = [c for c in got.cells if c.cell_type == "code"][2]
    assert third.outputs[-1]["data"]["text/plain"] == "42"
    assert json.loads(out.read_text())["metadata"]["jupytext"][
        "text_representation"]["format_name"] == "percent"


def test_apyrun_test_takes_text_notebooks_named(apyrun, tmp_path):
    """--test walks for .ipynb only; a .md named is a notebook item, a
    .py with the header runs as `apyrun nb.py` (a notebook)."""
    (tmp_path / "ok.md").write_text(MYST)
    (tmp_path / "nb.py").write_text(PERCENT)
    (tmp_path / "bad.md").write_text("```{code-cell}\nraise KeyError(1)\n"
                                     "```\n")
    (tmp_path / "README.md").write_text("# not a notebook\n")
    r = run([apyrun, "--test", "ok.md", "nb.py", "bad.md"], cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "apyrun: 2 passed, 1 failed" in r.stdout + r.stderr
    assert "bad.md" in r.stdout + r.stderr
    # A walk collects no .md: "no notebooks collected", pytest's exit 5.
    r = run([apyrun, "--test", "."], cwd=tmp_path)
    assert r.returncode == 5
    assert "no notebooks collected" in r.stderr
