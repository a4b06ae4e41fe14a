# SPDX-License-Identifier: MIT
"""The properties the Python-embedding fuzz targets check, in Python.

Each target (fuzz_translate.c, fuzz_import_rewrite.c, fuzz_magics.c,
fuzz_params.c) calls apyrun's C function on the input and hands input and
result to one function here; a failed assert (or an exception a check
does not expect) aborts the run with the traceback, and libFuzzer saves
the input.  Where a property needs a reference, it is the documented rule
written out plainly (DESIGN.md, the functions' contracts), never a copy of
the C code's structure.
"""
import ast
import builtins
import json
import keyword
import io
import math
import re
import tokenize
import types
import unicodedata

TLA = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
HELPER = "__apyrun_nb__"


# ---- the IPython-syntax translator (src/ipython/translate.c) ----

def _parses(text, flags=TLA):
    try:
        compile(text, "<cell>", "exec", flags, dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def _helper_call(node):
    """(method, [str args]) of a call of __apyrun_nb__.method, or None."""
    if (isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == HELPER
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str)
                    for a in node.args)):
        return node.func.attr, [a.value for a in node.args]
    return None


# IPython's prompts pasted with code (inputtransformer2.PromptStripper),
# the documented rule written out: lines split at "\n"; Python's \s read
# as ASCII white space only (apyrun skips no other).
_S = "[ \t\r\f\v\x1c-\x1f]"
_CLASSIC = re.compile(r"^(>>>|\.\.\.)( |$)")
_CLASSIC_FIRST = re.compile(r"^>>>( |$)")
_IPYTHON = re.compile(r"^(((\[nav\]|\[ins\])? )?In \[[0-9]+\]: |" + _S
                      + r"*\.{3,}: ?)")


def _strip_prompts(text):
    """text with prompts stripped as IPython does: when the first line
    that is not blank (or the one after it) has one, from every line."""
    lines = text.split("\n")
    first = next((i for i, ln in enumerate(lines)
                  if ln.strip(" \t\r\f\v\x1c\x1d\x1e\x1f")), None)
    if first is None:
        return text
    for initial, prompt in ((_CLASSIC_FIRST, _CLASSIC),
                            (_IPYTHON, _IPYTHON)):
        second = lines[first + 1] if first + 1 < len(lines) else None
        if initial.match(lines[first]) or (second is not None
                                           and prompt.match(second)):
            lines = [prompt.sub("", ln, count=1) for ln in lines]
    return "\n".join(lines)


# IPython's help syntax (HelpEnd, EscapedCommand): `name?`, `name??` (the
# longest tail of the line that is a name), `?text`, `??text`.
_HELP_END = re.compile(r"(%{0,2}(?!\d)[\w*]+(\.(?!\d)[\w*]+)*)(\?\??)$")


def _last_token_is_question_mark(body):
    """IPython's HelpEnd.find on one line: its tokens (as far as the
    tokenizer gets: an unbalanced line stops short, before its NEWLINE)
    have a '?' last but one, the NEWLINE last."""
    tokens = []
    try:
        for t in tokenize.generate_tokens(io.StringIO(body).readline):
            if t.type in (tokenize.NL, tokenize.ENDMARKER, tokenize.DEDENT,
                          tokenize.INDENT, tokenize.COMMENT) and tokens \
                    and tokens[-1].type == tokenize.NEWLINE:
                continue
            tokens.append(t)
    except (tokenize.TokenError, SyntaxError):
        pass
    return len(tokens) > 2 and tokens[-2].string == "?"


def _made_help(stmt, body):
    """(magic, target) when the translation stmt is a help call that is
    not the line's own %pinfo-like magic, else None."""
    try:
        node = ast.parse(stmt).body[0]
    except (SyntaxError, IndexError):
        return None
    call = _helper_call(node.value) if isinstance(node, ast.Expr) else None
    if (call is None or call[0] != "line_magic" or len(call[1]) != 2
            or call[1][0] not in ("pinfo", "pinfo2", "psearch")
            or body.startswith("%" + call[1][0])):
        return None
    return tuple(call[1])


def _help_call(body):
    """(magic, target) IPython makes of help line `body`, or None. A line
    holding a control character (but tab) is none: IPython would split
    it into lines there (str.splitlines), apyrun splits at "\n" only."""
    if any(c < " " and c != "\t" for c in body):
        return None
    if body.startswith("?"):
        marks = 2 if body.startswith("??") else 1
        target = body[marks:].lstrip(" \t")
        if not target:
            # `?` alone: IPython's show_usage(), %pinfo of nothing.
            return "pinfo", ""
    else:
        if not _last_token_is_question_mark(body):
            return None
        stripped = body.rstrip("?")
        if not 1 <= len(body) - len(stripped) <= 2:
            return None
        marks = len(body) - len(stripped)
        m = _HELP_END.search(body)
        if m is None:
            return None
        target = m.group(1)
    return ("pinfo2" if marks == 2 else "psearch" if "*" in target
            else "pinfo"), target


def _check_translated_line(line, out):
    """`line` (IPython syntax) became `out`: same indentation, and the
    helper call gives back the exact text of the command or magic."""
    body = line.lstrip(" \t")
    indent = line[:len(line) - len(body)]
    assert out.startswith(indent), (line, out)
    stmt = out[len(indent):]
    body = body.rstrip(" \t\r")
    help_call = _help_call(body)
    made = _made_help(stmt, body)
    if help_call is not None and not any(c in body for c in "'\"#"):
        # Unambiguous help (no string or comment for IPython's tokenizer
        # to read otherwise): exactly IPython's call.
        assert made == help_call, (line, out)
        return
    if made is not None:
        # Made help of a line with quotes or '#': at least a well-formed
        # one, its name a tail of the line before the '?'s (or the text
        # after leading ones).
        magic, target = made
        if body.startswith("?"):
            marks = 2 if body.startswith("??") else 1
            assert body[marks:].lstrip(" \t") == target, (line, out)
        else:
            marks = len(body) - len(body.rstrip("?"))
            assert body[:-marks].endswith(target), (line, out)
            assert _HELP_END.fullmatch(target + "?" * marks), (line, out)
        assert magic == ("pinfo2" if marks == 2 else "psearch"
                         if "*" in target else "pinfo"), (line, out)
        return
    if f"{HELPER}.tic()" in stmt:
        # %time STMT: the statement is the user's, verbatim.
        assert "%time" in body, (line, out)
        return
    target = None
    if body[0] not in "!%":
        target, _, body = body.partition("=")
        body = body.lstrip(" \t")
        # The target is the user's: the line parses exactly when
        # `TARGET = 0` does.
        if not _parses(target + "= 0", 0):
            assert not _parses(stmt, 0), (line, out)
            return
    tree = ast.parse(stmt)
    assert len(tree.body) == 1, (line, out)
    node = tree.body[0]
    if target is not None:
        assert isinstance(node, ast.Assign), (line, out)
    else:
        assert isinstance(node, ast.Expr), (line, out)
    call = _helper_call(node.value)
    assert call is not None, (line, out)
    method, args = call
    if method in ("system", "getoutput"):
        assert method == ("system" if target is None else "getoutput")
        assert body == "!" + args[0], (line, out)
    else:
        assert method == "line_magic" and len(args) == 2, (line, out)
        name, arg = args
        assert body.startswith("%" + name), (line, out)
        rest = body[1 + len(name):]
        assert rest.lstrip(" \t") == arg, (line, out)
        # The name runs to the first blank, as IPython's partition(' ').
        assert not rest or rest[0] in " \t", (line, out)


def translate(src, out, cell_magic):
    """src: a cell (bytes, NUL-free); out: its translation."""
    if cell_magic:
        return
    try:
        text, result = src.decode(), out.decode()
    except UnicodeDecodeError:
        return
    text = _strip_prompts(text)
    if _parses(text):
        # Python code is never IPython syntax: nothing may change.
        assert result == text, (text, result)
        return
    lines, outs = text.split("\n"), result.split("\n")
    assert len(lines) == len(outs)
    for line, new in zip(lines, outs):
        if line != new:
            _check_translated_line(line, new)


# ---- the import rewrite (src/tla/import_rewrite.c) ----

def _frame_bodies(stmt):
    """The statement lists of compound statement `stmt` that run in the
    frame `stmt` runs in (not def, class or lambda bodies)."""
    if isinstance(stmt, (ast.If, ast.For, ast.AsyncFor, ast.While)):
        return [stmt.body, stmt.orelse]
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return [stmt.body]
    if isinstance(stmt, (ast.Try, ast.TryStar)):
        return ([stmt.body] + [h.body for h in stmt.handlers]
                + [stmt.orelse, stmt.finalbody])
    if isinstance(stmt, ast.Match):
        return [c.body for c in stmt.cases]
    return []


def _awaited(stmt):
    """(name, fromlist, level) of an inserted awaited import."""
    assert isinstance(stmt, ast.Expr), ast.dump(stmt)
    assert isinstance(stmt.value, ast.Await), ast.dump(stmt)
    call = stmt.value.value
    assert isinstance(call, ast.Call) and not call.keywords
    func = call.func
    assert isinstance(func, ast.Attribute) and func.attr == "_await_import"
    imp = func.value
    assert (isinstance(imp, ast.Call) and isinstance(imp.func, ast.Name)
            and imp.func.id == "__import__" and len(imp.args) == 1
            and imp.args[0].value == "_apyrun_importer")
    assert len(call.args) == 3
    return tuple(a.value for a in call.args)


def _expected_awaits(stmt):
    if isinstance(stmt, ast.Import):
        return [(alias.name, None, 0) for alias in stmt.names]
    if stmt.module == "__future__":
        return []
    return [(stmt.module or "", tuple(a.name for a in stmt.names),
             stmt.level or 0)]


def _location(node):
    return (node.lineno, node.col_offset, node.end_lineno,
            node.end_col_offset)


def _const_key(c):
    """A constant as code comparison should see it: NaN equal to NaN."""
    if isinstance(c, types.CodeType):
        return (types.CodeType, _code_key(c))
    if isinstance(c, (float, complex)):
        return (type(c), repr(c))
    if isinstance(c, tuple):
        return (tuple, tuple(map(_const_key, c)))
    if isinstance(c, frozenset):
        return (frozenset, tuple(sorted(repr(_const_key(x)) for x in c)))
    return (type(c), c)


def _code_key(code):
    """What two compiles of one tree must agree on (code == code does not
    do: a NaN constant, `1e999 - 1e999` folded, is not equal to itself)."""
    return (code.co_code, code.co_names, code.co_varnames,
            code.co_freevars, code.co_cellvars, code.co_flags,
            code.co_argcount, code.co_posonlyargcount,
            code.co_kwonlyargcount, code.co_firstlineno, code.co_linetable,
            code.co_exceptiontable, code.co_name, code.co_qualname,
            tuple(map(_const_key, code.co_consts)))


def rewrite_before(tree):
    """What rewrite_after compares with: the tree's dump, its nodes (kept
    alive so that their ids stay theirs) and its TLA code or None."""
    try:
        code = compile(tree, "<fuzz>", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                       dont_inherit=True)
    except (SyntaxError, ValueError):
        code = None
    return ast.dump(tree, include_attributes=True), list(ast.walk(tree)), code


def rewrite_after(before, src, tree, inserted, module_code, is_tla):
    """`tree` after apy_tla_rewrite_imports inserted `inserted` statements;
    module_code and is_tla are what apy_tla_compile made of src."""
    dump, nodes, code = before
    if code is not None:
        # The rewritten tree compiles, and awaits when anything was added.
        new = compile(tree, "<fuzz>", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                      dont_inherit=True)
        if inserted:
            assert new.co_flags & 0x80, "awaits inserted, no coroutine"
        else:
            assert _code_key(new) == _code_key(code)
    old = {id(n) for n in nodes}
    found = 0

    def strip(body):
        """Checks and removes the inserted statements of one frame body."""
        nonlocal found
        kept, pending = [], []
        for stmt in body:
            if id(stmt) not in old:
                pending.append(stmt)
                found += 1
                continue
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                assert [_awaited(p) for p in pending] == \
                    _expected_awaits(stmt), ast.dump(stmt)
                assert all(_location(p) == _location(stmt) for p in pending)
            else:
                assert not pending, "an await before a non-import"
                for sub in _frame_bodies(stmt):
                    strip(sub)
            pending = []
            kept.append(stmt)
        assert not pending, "an await at the end of a body"
        body[:] = kept

    strip(tree.body)
    assert found == inserted, (found, inserted)
    # Nothing else changed (an insert into a def body would stay here).
    assert ast.dump(tree, include_attributes=True) == dump

    # apy_tla_compile: python's compile when that works, else TLA
    # code exactly when the TLA compile gives a coroutine.
    try:
        plain = compile(src, "<fuzz>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        plain = None
    if plain is not None:
        assert not is_tla and _code_key(module_code) == _code_key(plain)
    elif code is not None and code.co_flags & 0x80:
        assert is_tla and module_code is not None
        assert module_code.co_flags & 0x80
    else:
        assert not is_tla and module_code is None


# ---- the magics' arguments (src/ipython/magic_args.c, shell.c) ----

def cell_magic(src, name, arg, body_at, first_line):
    """src (bytes) is a %%magic cell split into name, arg and the body at
    byte offset body_at, which starts after cell line first_line."""
    head, body = src[:body_at], src[body_at:]
    assert src.lstrip(b"\n \t\r").startswith(b"%%")
    lead = len(src) - len(src.lstrip(b"\n \t\r"))
    first = src[lead + 2:].split(b"\n", 1)[0]
    raw_name = first.split(b" ", 1)[0].split(b"\t", 1)[0]
    assert name == raw_name.decode(errors="replace")
    assert arg == first[len(raw_name):].decode(errors="replace").strip()
    assert not body or head.endswith(b"\n")
    if body:
        assert head.count(b"\n") == first_line
    assert head.count(b"\n") in (first_line - 1, first_line)


CAPTURE_OPTIONS = ("--no-stdout", "--no-stderr", "--no-display")


def magic_args(arg, take, var, append, file, env):
    """What magic_args.c made of `arg` for %%capture, %%writefile, %env."""
    words = arg.split()
    assert list(take) == [o not in words for o in CAPTURE_OPTIONS]
    others = [w for w in words if w not in CAPTURE_OPTIONS]
    assert var == (others[-1] if others else None)

    others = [w for w in words if w not in ("-a", "--append")]
    if not others:
        assert file is None
    else:
        assert append == (len(others) < len(words))
        assert file == others[0].strip("'\"")

    kind, name, value = env
    text = arg.strip()
    if not text:
        assert (kind, name, value) == (0, None, None)
    elif "=" in text:
        n, v = text.split("=", 1)
        assert (kind, name, value) == (2, n.strip(), v.strip())
    elif len(text.split(None, 1)) == 2:
        n, v = text.split(None, 1)
        assert (kind, name, value) == (2, n, v.strip())
    else:
        assert (kind, name, value) == (1, text, None)


def expand_globals():
    """A fresh namespace for one expansion: no builtins, a few values."""
    return {"__builtins__": {}, "x": 1, "name": "a b", "pair": (1, "two"),
            "empty": ""}


# Expressions in {expr} run: keep them cheap and harmless (no calls, no
# repetition, no big numbers, no dunders), so that the target tests the
# expansion and not the speed of Python.
_UNSAFE = ("(", "*", "%", "<<", ">>", "for", "lambda", "__", "\\N")


def expand_safe(cmd):
    if any(u in cmd for u in _UNSAFE):
        return False
    digits = 0
    for c in cmd:
        digits = digits + 1 if c.isdigit() else 0
        if digits > 4:
            return False
    return True


def _ascii_name_char(c, first):
    return c.isascii() and (c.isalpha() or c == "_"
                            or (not first and c.isdigit()))


def _reference_expand(cmd):
    """IPython's expansion as apy__ipy_expand documents it."""
    if "$" not in cmd and "{" not in cmd:
        return cmd
    # One namespace for the whole command: `{[y := x]}{y}` sees y.
    namespace = expand_globals()
    out, i, n = [], 0, len(cmd)
    while i < n:
        c, nxt = cmd[i], cmd[i + 1:i + 2]
        if c == "$" and nxt == "$":
            out.append("$")
            i += 2
            continue
        if c in "{}" and nxt == c:
            out.append(c)
            i += 2
            continue
        if c == "$" and nxt and _ascii_name_char(nxt, True):
            j = i + 1
            while j < n and _ascii_name_char(cmd[j], False):
                j += 1
            expr, after = cmd[i + 1:j], j
        elif c == "{":
            close = cmd.find("}", i)
            if close < 0:
                return cmd
            expr, after = cmd[i + 1:close], close + 1
        else:
            out.append(c)
            i += 1
            continue
        try:
            out.append(str(eval(expr, namespace)))
        except BaseException:
            return cmd
        i = after
    return "".join(out)


def expand(cmd, result):
    assert result == _reference_expand(cmd), (cmd, result)


# ---- parameters (src/run/notebook/params.c) ----

def _typed(value):
    """A -p value typed as papermill types it."""
    if value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[value]
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


def _same(a, b):
    """a == b, with NaN equal to NaN and bool, int and float apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return (list(a) == list(b)
                and all(_same(a[k], b[k]) for k in a))
    return a == b


def _depth(v):
    if isinstance(v, dict):
        return 1 + max(map(_depth, v.values()), default=0)
    if isinstance(v, list):
        return 1 + max(map(_depth, v), default=0)
    return 0


MAX_DEPTH = 100  # params.c's limit on nested lists and objects


def _valid_name(name):
    return (isinstance(name, str) and name.isidentifier()
            and not keyword.iskeyword(name) and name != "__debug__"
            and unicodedata.normalize("NFKC", name) == name)


def params(file_text, pairs, source, err):
    """file_text: the --params-file bytes or None; pairs: the -p (name,
    value) bytes; source, err: what apy__nbrun_params_source returned."""
    expected, ok = {}, True
    if file_text is not None:
        try:
            obj = json.loads(file_text.decode("utf-8").replace("\r\n", "\n")
                             .replace("\r", "\n"))
        except (ValueError, RecursionError):
            obj = None
        ok = isinstance(obj, dict)
        if ok:
            expected.update(obj)
    for name, value in pairs:
        expected[name.decode(errors="surrogateescape")] = \
            _typed(value.decode(errors="surrogateescape"))
    ok = ok and all(_valid_name(k) for k in expected)
    ok = ok and all(_depth(v) <= MAX_DEPTH for v in expected.values())
    if not ok:
        assert source is None, source
        assert err and "\n" not in err, err
        return
    assert source is not None and not err, err
    assert source.startswith("# Parameters\n")
    namespace = {}
    exec(compile(source, "<params>", "exec", dont_inherit=True),
         {"__builtins__": builtins}, namespace)
    assert list(namespace) == list(expected), (namespace, expected)
    for k, v in expected.items():
        assert _same(namespace[k], v), (k, namespace[k], v)
