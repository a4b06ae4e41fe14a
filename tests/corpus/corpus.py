#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Corpus differential: real notebooks through apyrun and through Jupyter.

What it measures: the share of a corpus of real notebooks for which
apyrun records the same outputs as Jupyter does.  Jupyter here is the
reference command

    /usr/bin/python3 -m nbconvert --to notebook --execute --allow-errors \
        --ExecutePreprocessor.timeout=60 --output OUT.ipynb NB.ipynb

(Debian's nbconvert, nbclient and ipykernel; with the kernel python3 when
the notebook's kernelspec is not installed), and apyrun's is

    apyrun NB.ipynb --allow-errors --timeout 60 -o OUT.ipynb

(60: --timeout, seconds a cell may run under either tool.)

Each tool runs on its own copy of the notebook and of the files beside it,
in a scratch directory that is the working directory, so that nothing in
the source tree is touched and neither run sees the other's files.  The
executed notebooks are then compared code cell by code cell, as
tests/e2e_nb/test_nb_differential.py does:

- the number of code cells and each cell's execution count;
- the sequence of output types, consecutive stream outputs being merged
  into one entry holding the text of each stream by name (Jupyter splits
  and interleaves streams by flush timing);
- for display_data and execute_result, text/plain and the set of mime
  types; for errors, ename and evalue (not the traceback).

Texts are normalised first: memory addresses (0x...), timings, dates and
times, PIDs, temporary paths and the scratch directories are replaced by
placeholders, and "\\r\\n" (ipykernel runs `!cmd` on a pty) by "\\n".
With --lax-locations, where a warning or a SyntaxError says the code is
(ipykernel's temporary file and the line in the cell, apyrun's notebook
and the line in the .ipynb file) is not compared either.

Jupyter does not give every cell the same output twice (random numbers,
timings the normalisation misses, dict order of another process).  The
reference therefore runs twice (--ref-runs): a cell whose outputs differ
between the two Jupyter runs is compared by its shape only (output types,
stream names, mime types, enames), not by its texts.

A notebook is excluded, with the reason, and not counted, when Jupyter
cannot execute it meaningfully: it is not valid JSON, its kernel is for
another language, it has no code to run, nbconvert fails on it (a cell
timeout, a kernel that dies), or the reference run has an import that
fails (a module not installed, an API gone), needs the network or a GUI.
Identical notebooks (by content) are counted once.

Sources default to nbclient's notebooks beside the repository
(../shared/notebooks) and the notebooks of the Debian packages in
DEBIAN_SOURCES that are installed; directories and files given on the
command line replace them.  Notebooks compressed by Debian (.ipynb.gz)
are decompressed into the scratch copy, as are the .gz files beside a
notebook under /usr/share/doc.

Usage (from the repository):

    /usr/bin/python3 tests/corpus/corpus.py --apyrun build/apyrun \
        --cache /tmp/corpus-cache -j 2 [--json details.json] [PATH ...]

One line a notebook (same / DIFFERS with the first differing cell and
what differs / excluded with the reason), then "N notebooks, M same (P%)";
the exit status is 1 when P is below --min-percent (default 95).
"""
import argparse
import concurrent.futures
import errno
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REF_PYTHON = "/usr/bin/python3"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
OUT_NAME = "out.ipynb"
# The two copies' directories: names of one length, so that a path printed
# by a cell is as long under both tools.
REF_DIR, APY_DIR = "ref", "apy"
# Changes when what the cache holds, or how the reference runs, changes.
CACHE_FORMAT = 2

# Debian bookworm packages whose notebooks are in the default corpus:
# (package, directory searched).  A directory that is not there is skipped
# (the package is not installed) and said so on stderr.  What the -doc
# packages' notebooks import: python3-lark, python3-lmfit, python3-fluids
# (python3-pandas), python3-pygraphviz, python3-graphviz.  Left out, as
# none of their notebooks runs offline with Debian's packages:
# python-nbconvert-doc (network), python-pint-doc (xarray),
# python3-textdistance (plotnine).  Not tried, for their size and run
# time: python-sklearn-doc, python-statsmodels-doc, python-skimage-doc.
DEBIAN_SOURCES = [
    ("python3-nbclient", "/usr/lib/python3/dist-packages/nbclient/tests"),
    ("python3-matplotlib",
     "/usr/lib/python3/dist-packages/matplotlib/backends/web_backend"),
    ("python3-matplotlib", "/usr/lib/python3/dist-packages/matplotlib/tests"),
    ("python-lark-doc", "/usr/share/doc/python-lark-doc"),
    ("python-nbsphinx-doc", "/usr/share/doc/python-nbsphinx"),
    ("python-sphinx-gallery-doc", "/usr/share/doc/python-sphinx-gallery-doc"),
    ("python-notebook-doc", "/usr/share/doc/python-notebook-doc"),
    ("python-sympy-doc", "/usr/share/doc/python-sympy-doc"),
    ("python-lmfit-doc", "/usr/share/doc/python3-lmfit"),
    ("python-fluids-doc", "/usr/share/doc/python-fluids-doc"),
    ("python-pygraphviz-doc", "/usr/share/doc/python-pygraphviz-doc"),
    ("python3-graphviz", "/usr/share/doc/python3-graphviz"),
    ("python3-transitions", "/usr/share/doc/python3-transitions"),
    ("python3-wurlitzer", "/usr/share/doc/python3-wurlitzer"),
]

# Environment variables not passed on: the caller's shell must not change
# the outcome (pyenv's PYTHON*, a forced matplotlib backend, ...).
DROP = ("PYTHON", "APYRUN", "MPLBACKEND", "NO_COLOR", "JUPYTER", "PYTEST_")

# What in the reference outputs makes a run meaningless here.
NETWORK_ENAMES = {"ConnectionError", "ConnectionRefusedError", "URLError",
                  "gaierror", "HTTPError", "SSLError", "ProxyError",
                  "ConnectTimeout", "ReadTimeout", "MaxRetryError",
                  "NewConnectionError", "ClientConnectorError",
                  "TimeoutError"}
NETWORK_TEXT = re.compile(
    r"Name or service not known|Temporary failure in name resolution|"
    r"Network is unreachable|nodename nor servname|No route to host|"
    r"getaddrinfo failed|Failed to establish a new connection")
GUI_TEXT = re.compile(r"no display name|cannot connect to X server|"
                      r"could not connect to display|\$DISPLAY")

# Copying what lies beside a notebook: this deep, files up to this size,
# this much in all.
COPY_DEPTH = 2
COPY_FILE_MAX = 16 << 20
COPY_TOTAL_MAX = 64 << 20


# ---------------------------------------------------------------------------
# Finding the corpus

def default_sources():
    """nbclient's notebooks beside the repository, then Debian's."""
    shared = next((d for d in (os.path.join(os.path.dirname(REPO), "shared",
                                            "notebooks"),
                               "/work/shared/notebooks")
                   if os.path.isdir(d)), None)
    sources = [shared] if shared else []
    if not shared:
        print("corpus: no shared notebooks (../shared/notebooks)",
              file=sys.stderr)
    for package, path in DEBIAN_SOURCES:
        if os.path.isdir(path):
            sources.append(path)
        else:
            print(f"corpus: skipping {path}: not installed (Debian package "
                  f"{package})", file=sys.stderr)
    return sources


def is_notebook_name(name):
    return name.endswith(".ipynb") or name.endswith(".ipynb.gz")


def find_notebooks(sources):
    """Every notebook file under the sources, in a stable order."""
    found = []
    for src in sources:
        if os.path.isfile(src):
            found.append(os.path.abspath(src))
            continue
        for root, dirs, files in os.walk(src):
            dirs[:] = sorted(d for d in dirs
                             if d not in (".ipynb_checkpoints", ".git"))
            found.extend(os.path.join(os.path.abspath(root), f)
                         for f in sorted(files)
                         if is_notebook_name(f))
    return found


def read_bytes(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read()


def plain_name(path):
    name = os.path.basename(path)
    return name[:-3] if name.endswith(".gz") else name


class Item:
    """One notebook of the corpus: where it is, its bytes, its hash."""

    def __init__(self, path, data):
        self.path = path
        self.data = data
        self.digest = hashlib.sha256(data).hexdigest()
        self.name = plain_name(path)
        self.duplicates = []


def load_corpus(sources):
    """The notebooks, each content once (later copies noted on the first)."""
    items, by_digest = [], {}
    for path in find_notebooks(sources):
        try:
            data = read_bytes(path)
        except OSError as e:
            print(f"corpus: cannot read {path}: {e}", file=sys.stderr)
            continue
        item = Item(path, data)
        first = by_digest.get(item.digest)
        if first:
            first.duplicates.append(path)
            continue
        by_digest[item.digest] = item
        items.append(item)
    return items


def static_exclusion(item):
    """Why Jupyter cannot run this notebook meaningfully, or None."""
    try:
        nb = json.loads(item.data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return f"not a notebook: {e}"
    if not isinstance(nb, dict):
        return "not a notebook: not a JSON object"
    meta = nb.get("metadata") or {}
    spec = meta.get("kernelspec") or {}
    lang = (spec.get("language") or (meta.get("language_info") or {})
            .get("name") or "")
    if lang and lang.lower() not in ("python", "python3", "ipython"):
        return f"kernel for another language ({lang})"
    kname = spec.get("name", "")
    if not lang and kname and "python" not in kname.lower():
        return f"kernel for another language (kernelspec {kname})"
    if nb.get("nbformat", 4) < 4:
        cells = [c for ws in nb.get("worksheets", [])
                 for c in ws.get("cells", [])]
    else:
        cells = nb.get("cells", [])
    code = [c for c in cells if c.get("cell_type") == "code"
            and "".join(c.get("source", c.get("input", ""))).strip()]
    if not code:
        return "no code cells"
    return None


# ---------------------------------------------------------------------------
# Running the tools

def child_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROP)}
    # Both tools' `!python3` and `%%bash` find Debian's python first.
    env["PATH"] = "/usr/bin:/bin:" + env.get("PATH", "")
    return env


def copy_beside(src_dir, dest, under_doc):
    """Copies what is beside a notebook (bounded), so that the notebook
    finds its data files, images and local modules."""
    total = 0

    def walk(sdir, ddir, depth):
        nonlocal total
        try:
            entries = sorted(os.scandir(sdir), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if e.name in (".git", ".ipynb_checkpoints"):
                continue
            target = os.path.join(ddir, e.name)
            try:
                if e.is_dir(follow_symlinks=False):
                    if depth < COPY_DEPTH:
                        os.makedirs(target, exist_ok=True)
                        walk(e.path, target, depth + 1)
                    continue
                if not e.is_file():
                    continue
                size = e.stat().st_size
                if size > COPY_FILE_MAX or total + size > COPY_TOTAL_MAX:
                    continue
                shutil.copyfile(e.path, target)
                total += size
                if under_doc and e.name.endswith(".gz"):
                    plain = target[:-3]
                    if not os.path.exists(plain):
                        with gzip.open(e.path, "rb") as f:
                            data = f.read()
                        with open(plain, "wb") as f:
                            f.write(data)
                        total += len(data)
            except (OSError, EOFError, gzip.BadGzipFile):
                continue

    walk(src_dir, dest, 0)


def stage(item, root):
    """root/<dir>/: a fresh copy of the notebook's directory <dir>, the
    working directory of the run; root/out.ipynb, outside it, is where the
    executed notebook goes (a cell listing its directory, or the one
    above, sees the same files under both tools).  Returns (working
    directory, notebook, output)."""
    shutil.rmtree(root, ignore_errors=True)
    src_dir = os.path.dirname(item.path)
    cwd = os.path.join(root, os.path.basename(src_dir) or "nb")
    os.makedirs(cwd)
    copy_beside(src_dir, cwd, src_dir.startswith("/usr/share/doc"))
    nb_path = os.path.join(cwd, item.name)
    if os.path.exists(nb_path + ".gz"):
        os.unlink(nb_path + ".gz")
    with open(nb_path, "wb") as f:
        f.write(item.data)
    return cwd, nb_path, os.path.join(root, OUT_NAME)


def run(cmd, cwd, timeout):
    """Runs cmd in its own session; kills the session after timeout."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=child_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out.decode(errors="replace"), err.decode(errors="replace")
    finally:
        # Whatever the notebook left running in the session.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.returncode, out.decode(errors="replace"), \
        err.decode(errors="replace")


def tail(text, lines=15):
    return "\n".join(text.rstrip().splitlines()[-lines:])


def read_out(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ref_versions():
    r = subprocess.run(
        [REF_PYTHON, "-c",
         "import sys, nbconvert, nbclient, ipykernel, IPython\n"
         "print(sys.version.split()[0], nbconvert.__version__, "
         "nbclient.__version__, ipykernel.__version__, IPython.__version__)"],
        capture_output=True, text=True, env=child_env())
    if r.returncode:
        sys.exit(f"corpus: {REF_PYTHON} has no nbconvert/ipykernel "
                 f"(Debian: python3-nbconvert python3-ipykernel):\n{r.stderr}")
    return r.stdout.strip()


def run_reference(item, scratch, args):
    """One nbconvert run: {rc, stderr, nb, dir, note}."""
    root = os.path.join(scratch, REF_DIR)
    extra = []
    note = None
    for attempt in range(2):
        cwd, nb_path, out = stage(item, root)
        cmd = [REF_PYTHON, "-m", "nbconvert", "--to", "notebook",
               "--execute", "--allow-errors",
               f"--ExecutePreprocessor.timeout={args.timeout}", *extra,
               "--output-dir", root, "--output", OUT_NAME, nb_path]
        rc, _, err = run(cmd, cwd, args.timeout * 20 + 120)
        if not (rc and "NoSuchKernel" in err) or extra:
            break
        # A Python notebook whose kernelspec (python2, a conda env) is not
        # installed: Jupyter would ask which kernel; take python3.
        note = "kernelspec not installed: run with kernel python3"
        extra = ["--ExecutePreprocessor.kernel_name=python3"]
    nb = read_out(out) if rc == 0 else None
    return {"rc": rc, "stderr": tail(err), "nb": nb, "dir": cwd,
            "note": note}


def reference(item, scratch, args, versions):
    """The reference runs, from the cache when it has them."""
    key = hashlib.sha256(f"{CACHE_FORMAT} {item.digest} {versions} "
                         f"{args.timeout} {item.name} "
                         f"{os.path.basename(os.path.dirname(item.path))}"
                         .encode()).hexdigest()
    cache_file = os.path.join(args.cache, key + ".json") if args.cache \
        else None
    runs = []
    if cache_file and os.path.exists(cache_file):
        try:
            with open(cache_file, encoding="utf-8") as f:
                runs = json.load(f)["runs"]
        except (OSError, ValueError, KeyError):
            runs = []
    changed = False
    while len(runs) < args.ref_runs:
        r = run_reference(item, scratch, args)
        runs.append(r)
        changed = True
        if r["nb"] is None:
            break          # nbconvert failed: once is enough
    if changed and cache_file:
        tmp = cache_file + f".{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"path": item.path, "runs": runs}, f)
        os.replace(tmp, cache_file)
    return runs


def wait_for_binary(path, patience=900):
    """The binary may be mid-rebuild (another engineer's build): wait."""
    deadline = time.monotonic() + patience
    while not (os.path.isfile(path) and os.access(path, os.X_OK)):
        if time.monotonic() > deadline:
            sys.exit(f"corpus: {path}: no executable there")
        time.sleep(5)


def run_apyrun(item, scratch, args):
    root = os.path.join(scratch, APY_DIR)
    for attempt in range(60):
        cwd, nb_path, out = stage(item, root)
        cmd = [args.apyrun, nb_path, "--allow-errors", "--timeout",
               str(args.timeout), "-o", out]
        wait_for_binary(args.apyrun)
        try:
            rc, _, err = run(cmd, cwd, args.timeout * 20 + 120)
        except OSError as e:
            if e.errno in (errno.ETXTBSY, errno.ENOENT, errno.EACCES,
                           errno.ENOEXEC):
                time.sleep(5)
                continue
            raise
        break
    return {"rc": rc, "stderr": tail(err), "nb": read_out(out), "dir": cwd}


# ---------------------------------------------------------------------------
# Comparing

_NORMALISE = [
    (re.compile(r"0x[0-9a-fA-F]{4,}"), "0x…"),
    (re.compile(r"/tmp/ipykernel_\d+/\d+\.py"), "<cell>"),
    (re.compile(r"(/tmp|/var/tmp)/[^\s'\"()\[\]<>,:]*"), "/tmp/…"),
    (re.compile(r"\d{4}-\d\d-\d\d([ T]\d\d:\d\d(:\d\d(\.\d+)?)?)?"),
     "<date>"),
    (re.compile(r"\b\d\d?:\d\d:\d\d(\.\d+)?\b"), "<time>"),
    (re.compile(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|"
                r"Jul|Aug|Sep|Oct|Nov|Dec) +\d+"), "<day>"),
    (re.compile(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?\s*(ns|µs|us|ms|s|sec|secs|"
                r"seconds?|min|mins|minutes?)\b"), "<T>"),
    (re.compile(r"\d[\d,]* loops?"), "<N> loops"),
    (re.compile(r"\b\d+ runs?\b"), "<N> runs"),
    (re.compile(r"\b(pid|PID|process|Process)([ =:#]+)\d+"), r"\1\2<PID>"),
]


# --lax-locations: where a cell's code is said to be.  ipykernel names a
# cell /tmp/ipykernel_PID/HASH.py and counts lines from the cell's first;
# apyrun names the notebook and counts its lines in the .ipynb file.
_LAX = [
    (re.compile(r"<DIR>/[^\s:]*\.ipynb:\d+:"), "<cell>:N:"),
    (re.compile(r"<cell>:\d+:"), "<cell>:N:"),
    (re.compile(r"\((?:[^()]*\.ipynb|\d+\.py), line \d+\)"),
     "(<cell>, line N)"),
]


def normalise(text, dirs, lax=False):
    """text with what varies between runs replaced; dirs: (path,
    placeholder) pairs, the copy's directories."""
    if text is None:
        return None
    if isinstance(text, list):
        text = "".join(text)
    text = text.replace("\r\n", "\n")
    for d, placeholder in dirs:
        text = text.replace(d, placeholder)
    for pattern, repl in _NORMALISE + (_LAX if lax else []):
        text = pattern.sub(repl, text)
    return text


def code_cells(nb):
    if nb.get("nbformat", 4) < 4:
        return [c for ws in nb.get("worksheets", [])
                for c in ws.get("cells", []) if c.get("cell_type") == "code"]
    return [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]


def summary(nb, cwd, lax=False):
    """Per code cell: (source, execution count, outputs), normalised; cwd:
    the directory the notebook ran in."""
    dirs = [(cwd, "<DIR>"), (os.path.dirname(cwd), "<ROOT>")]
    cells = []
    for c in code_cells(nb):
        outs = []
        for o in c.get("outputs", []):
            kind = o.get("output_type")
            if kind == "stream":
                text = normalise(o.get("text", ""), dirs, lax)
                if "UserWarning: To exit: use" in text:
                    # IPython's shell warns on its stderr after a
                    # SystemExit with a code; not a cell output.
                    continue
                name = o.get("name", "stdout")
                if outs and outs[-1][0] == "stream":
                    merged = dict(outs[-1][1])
                    merged[name] = merged.get(name, "") + text
                    outs[-1] = ("stream", merged)
                else:
                    outs.append(("stream", {name: text}))
            elif kind in ("display_data", "execute_result"):
                data = o.get("data", {})
                plain = normalise(data.get("text/plain"), dirs, lax)
                outs.append((kind, plain, tuple(sorted(data))))
            elif kind == "error":
                outs.append((kind, o.get("ename"),
                             normalise(o.get("evalue", ""), dirs, lax)))
            else:
                outs.append((kind,))
        source = c.get("source", c.get("input", ""))
        if isinstance(source, list):
            source = "".join(source)
        cells.append({"source": source, "count": c.get("execution_count"),
                      "outputs": outs})
    return cells


def shape(outs):
    """What of a cell's outputs is compared when Jupyter's texts vary."""
    res = []
    for o in outs:
        if o[0] == "stream":
            res.append(("stream", tuple(sorted(o[1]))))
        elif o[0] in ("display_data", "execute_result"):
            res.append((o[0], o[2]))
        elif o[0] == "error":
            res.append((o[0], o[1]))
        else:
            res.append(o)
    return res


def describe(want, got):
    """What differs between Jupyter's outputs (want) and apyrun's (got)."""
    if [o[0] for o in want] != [o[0] for o in got]:
        return ("output types: apyrun " + fmt_types(got) + " vs jupyter "
                + fmt_types(want))
    for w, g in zip(want, got):
        if w == g:
            continue
        if w[0] == "stream":
            for name in sorted(set(w[1]) | set(g[1])):
                if w[1].get(name) != g[1].get(name):
                    return (f"{name}: apyrun {clip(g[1].get(name))} vs "
                            f"jupyter {clip(w[1].get(name))}")
        if w[0] in ("display_data", "execute_result"):
            if w[2] != g[2]:
                return (f"{w[0]} mime types: apyrun {list(g[2])} vs "
                        f"jupyter {list(w[2])}")
            return (f"{w[0]} text/plain: apyrun {clip(g[1])} vs "
                    f"jupyter {clip(w[1])}")
        if w[0] == "error":
            return (f"error: apyrun {g[1]}: {clip(g[2])} vs "
                    f"jupyter {w[1]}: {clip(w[2])}")
        return f"apyrun {g} vs jupyter {w}"
    return "outputs differ"


def fmt_types(outs):
    parts = []
    for o in outs:
        if o[0] == "stream":
            parts.append("stream(" + "+".join(sorted(o[1])) + ")")
        elif o[0] == "error":
            parts.append(f"error({o[1]})")
        else:
            parts.append(o[0])
    return "[" + ", ".join(parts) + "]"


def clip(text, n=120):
    if text is None:
        return "(none)"
    r = repr(text)
    return r if len(r) <= n else r[:n - 1] + "…"


def compare(refs, ours):
    """The differing cells: a list of dicts (empty when the same), and the
    number of cells compared by shape only."""
    want_runs = [r["summary"] for r in refs]
    want, got = want_runs[0], ours
    if len(want) != len(got):
        return [{"cell": None, "what": f"code cells: apyrun {len(got)} vs "
                 f"jupyter {len(want)}"}], 0
    diffs, unstable = [], 0
    for i, (w, g) in enumerate(zip(want, got), 1):
        stable = all(len(r) == len(want) and r[i - 1]["outputs"]
                     == w["outputs"] for r in want_runs[1:])
        if not stable:
            unstable += 1
            same = shape(g["outputs"]) == shape(w["outputs"])
            if not all(shape(r[i - 1]["outputs"]) == shape(w["outputs"])
                       for r in want_runs[1:]):
                same = True        # not even the shape is reproducible
        else:
            same = g["outputs"] == w["outputs"]
        what = None
        if not same:
            what = describe(w["outputs"], g["outputs"])
            if not stable:
                what += " (shape; Jupyter's texts vary)"
        elif stable and g["count"] != w["count"]:
            what = (f"execution_count: apyrun {g['count']} vs "
                    f"jupyter {w['count']}")
        if what:
            diffs.append({"cell": i, "what": what, "source": w["source"],
                          "jupyter": w["outputs"], "apyrun": g["outputs"]})
    return diffs, unstable


def failure_line(stderr):
    """The line of nbconvert's stderr that says why it failed."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"[\w.]*(Error|Exception|Exit)\b", ln):
            return ln
    return lines[-1] if lines else ""


def reference_exclusion(summ):
    """Why the reference run is meaningless (network, GUI, a missing
    module), or None."""
    for cell in summ:
        for o in cell["outputs"]:
            if o[0] == "error":
                ename, evalue = o[1] or "", o[2] or ""
                if ename in NETWORK_ENAMES or NETWORK_TEXT.search(evalue):
                    return f"needs the network ({ename}: {evalue[:80]})"
                if GUI_TEXT.search(evalue) or ename == "TclError":
                    return f"needs a GUI ({ename}: {evalue[:80]})"
                if ename in ("ModuleNotFoundError", "ImportError"):
                    return (f"an import fails under Jupyter ({ename}: "
                            f"{evalue[:80]})")
            if o[0] == "stream" and NETWORK_TEXT.search(
                    o[1].get("stderr", "")):
                return "needs the network (stderr)"
    return None


# ---------------------------------------------------------------------------
# One notebook, and the whole corpus

def process(item, args, versions):
    """Runs both tools on one notebook; returns its result dict."""
    res = {"path": item.path, "duplicates": item.duplicates}
    why = static_exclusion(item)
    if why:
        return dict(res, status="excluded", reason=why)
    scratch = tempfile.mkdtemp(prefix="corpus-", dir=args.scratch)
    try:
        refs = reference(item, scratch, args, versions)
        if refs[0]["note"]:
            res["note"] = refs[0]["note"]
        bad = next((r for r in refs if r["nb"] is None), None)
        if bad:
            rc = "timed out" if bad["rc"] is None else f"exit {bad['rc']}"
            last = failure_line(bad["stderr"])
            return dict(res, status="excluded",
                        reason=f"nbconvert cannot execute it ({rc}: "
                               f"{last[:120]})")
        for r in refs:
            r["summary"] = summary(r["nb"], r["dir"], args.lax_locations)
            r["strict"] = summary(r["nb"], r["dir"], False)
        why = reference_exclusion(refs[0]["summary"])
        if why:
            return dict(res, status="excluded", reason=why)
        ours = run_apyrun(item, scratch, args)
        if ours["nb"] is None:
            rc = "timed out" if ours["rc"] is None else f"exit {ours['rc']}"
            return dict(res, status="differs", diffs=[{
                "cell": None, "what": f"apyrun wrote no notebook ({rc}: "
                f"{ours['stderr'][-300:]})"}])
        got = summary(ours["nb"], ours["dir"], args.lax_locations)
        diffs, unstable = compare(refs, got)
        # Also judged with locations compared (the two differ only under
        # --lax-locations).
        strict_refs = [dict(r, summary=r["strict"]) for r in refs]
        res["same_strict"] = not compare(
            strict_refs, summary(ours["nb"], ours["dir"], False))[0]
        res["unstable_cells"] = unstable
        res["apyrun_rc"] = ours["rc"]
        if ours["rc"] not in (0, 1):
            res["apyrun_stderr"] = ours["stderr"]
        if diffs:
            return dict(res, status="differs", diffs=diffs)
        return dict(res, status="same")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


def line(res):
    """The one line printed for a notebook."""
    path = res["path"]
    if res["status"] == "same":
        extra = (f" ({res['unstable_cells']} cells by shape)"
                 if res.get("unstable_cells") else "")
        return f"same      {path}{extra}"
    if res["status"] == "excluded":
        return f"excluded  {path}: {res['reason']}"
    d = res["diffs"][0]
    where = "notebook" if d["cell"] is None else f"code cell {d['cell']}"
    src = ""
    if d.get("source"):
        first = d["source"].strip().splitlines()[0] if d["source"].strip() \
            else ""
        src = f" [{first[:50]}]"
    more = (f" (+{len(res['diffs']) - 1} more cells)"
            if len(res["diffs"]) > 1 else "")
    return f"DIFFERS   {path}: {where}{src}: {d['what']}{more}"


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*",
                    help="notebooks or directories (default: "
                         "../shared/notebooks and the Debian packages' "
                         "notebooks)")
    ap.add_argument("--apyrun", default=os.path.join(REPO, "build",
                                                     "apyrun"),
                    help="the apyrun binary (default: build/apyrun)")
    ap.add_argument("-j", "--jobs", type=int, default=2,
                    help="notebooks run at once (default 2)")
    ap.add_argument("--cache", help="directory keeping nbconvert's outputs, "
                    "keyed by the notebook's content hash")
    ap.add_argument("--timeout", type=int, default=60,
                    help="seconds a cell may run, under both tools "
                         "(default 60)")
    ap.add_argument("--ref-runs", type=int, default=2,
                    help="Jupyter runs a notebook; cells whose outputs vary "
                         "between them are compared by shape (default 2)")
    ap.add_argument("--min-percent", type=float, default=95.0,
                    help="exit 1 below this share of same notebooks "
                         "(default 95)")
    ap.add_argument("--lax-locations", action="store_true",
                    help="do not compare where a warning or SyntaxError says "
                         "the code is (ipykernel's temporary file and cell "
                         "line, apyrun's notebook and file line)")
    ap.add_argument("--json", help="write every result, with the differing "
                    "cells' outputs, to this file")
    ap.add_argument("--scratch", default=None,
                    help="where the copies run (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the scratch copies")
    args = ap.parse_args(argv)
    args.apyrun = os.path.abspath(args.apyrun)
    args.ref_runs = max(1, args.ref_runs)
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)
    wait_for_binary(args.apyrun)
    versions = ref_versions()
    items = load_corpus(args.paths or default_sources())
    print(f"corpus: {len(items)} distinct notebooks; reference: python, "
          f"nbconvert, nbclient, ipykernel, IPython {versions}",
          file=sys.stderr)

    results = []
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as ex:
        for res in ex.map(lambda it: process(it, args, versions), items):
            results.append(res)
            print(line(res), flush=True)

    counted = [r for r in results if r["status"] != "excluded"]
    same = sum(r["status"] == "same" for r in counted)
    excluded = len(results) - len(counted)
    pct = 100.0 * same / len(counted) if counted else 0.0
    print(f"{len(counted)} notebooks, {same} same ({pct:.1f}%); "
          f"{excluded} excluded")
    if args.lax_locations and counted:
        strict = sum(r["status"] == "same" and r.get("same_strict", False)
                     for r in counted)
        print(f"with the locations of code compared too: {strict} same "
              f"({100.0 * strict / len(counted):.1f}%)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"versions": versions, "apyrun": args.apyrun,
                       "counted": len(counted), "same": same,
                       "percent": pct, "results": results}, f, indent=1,
                      ensure_ascii=False)
    if not counted:
        return 2
    return 0 if pct >= args.min_percent else 1


if __name__ == "__main__":
    sys.exit(main())
