# SPDX-License-Identifier: MIT
"""The layering check fails when it should: each test builds a tiny tree
of layers (C files compiled with cc into objects laid out as CMake lays
them out), breaks one rule, and expects check_layers.py to say so; the
same tree unbroken passes."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(HERE, "check_layers.py")


def build(tmp_path, layers, files, headers=None):
    """layers: [(name, dirs, uses[, levels])]; files: {src path: C text}."""
    src = tmp_path / "src"
    inc = tmp_path / "include" / "apyrun"
    inc.mkdir(parents=True)
    for path, text in (headers or {}).items():
        p = tmp_path / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    entries = []
    for name, dirs, uses, *levels in layers:
        objects = []
        for path, text in files.items():
            if os.path.dirname(path) not in dirs:
                continue
            p = src / path
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
            obj = tmp_path / "build" / "CMakeFiles" / f"apy_{name}.dir" / (
                path + ".o")
            obj.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cc", "-c", "-I", str(tmp_path / "include"),
                            "-o", str(obj), str(p)], check=True)
            objects.append(str(obj))
        entries.append({"name": name, "dirs": ";".join(dirs),
                        "uses": ";".join(uses),
                        "levels": "|".join(levels[0] if levels else []),
                        "objects": ";".join(objects)})
    (tmp_path / "layers.json").write_text(json.dumps(entries))
    main = src / "main.c"
    main.write_text("int apy_b_entry(void);\n"
                    "int main(void) { return apy_b_entry(); }\n")
    subprocess.run(["cc", "-c", "-o", str(tmp_path / "main.o"), str(main)],
                   check=True)


def check(tmp_path):
    r = subprocess.run(
        [sys.executable, CHECK, "--main-object", str(tmp_path / "main.o"),
         str(tmp_path / "layers.json"), str(tmp_path / "src"),
         str(tmp_path / "include")], capture_output=True, text=True)
    return r.returncode, r.stdout


GOOD = {
    "a/low.c": "int apy_a_value(void) { return 1; }\n",
    "b/top.c": "int apy_a_value(void);\n"
               "int apy__b_helper(void);\n"
               "int apy_b_entry(void) { return apy_a_value() + "
               "apy__b_helper(); }\n",
    "b/help.c": "int apy__b_helper(void) { return 2; }\n",
}
LAYERS = [("a", ["a"], []), ("b", ["b"], ["a"])]


def test_public_header_nobody_includes(tmp_path):
    build(tmp_path, LAYERS, GOOD, {"include/apyrun/a.h": "\n"})
    rc, out = check(tmp_path)
    # a.h is included by no one: that one complaint is expected.
    assert "include/apyrun/a.h is public but only layer (none)" in out
    assert out.count("layering: ") == 2, out


def test_good_tree_without_headers_passes(tmp_path):
    build(tmp_path, LAYERS, GOOD)
    rc, out = check(tmp_path)
    assert rc == 0, out
    assert "0 problems" in out


def test_call_against_the_order(tmp_path):
    files = dict(GOOD)
    files["a/low.c"] = ("int apy_b_entry(void);\n"
                        "int apy_a_value(void) { return 1; }\n"
                        "int apy_a_up(void) { return apy_b_entry(); }\n")
    files["b/top.c"] += "int apy_a_up(void);\nint g(void) { return apy_a_up(); }\n"
    build(tmp_path, LAYERS, files)
    rc, out = check(tmp_path)
    assert rc == 1
    assert "a layer a may not use: apy_b_entry" in out
    assert "layer cycle: a <-> b" in out
    assert "directory cycle: a <-> b" in out


def test_unused_uses(tmp_path):
    build(tmp_path, [("a", ["a"], []), ("b", ["b"], ["a"]),
                     ("c", ["c"], ["a"])],
          dict(GOOD, **{"c/c.c": "int apy__c_x(void) { return 0; }\n"
                                 "int apy__c_y(void) { return apy__c_x(); }\n"}))
    rc, out = check(tmp_path)
    assert rc == 1
    assert "layer c declares USES a but calls nothing of it" in out


def test_circle_of_four_files(tmp_path):
    ring = {}
    for i in range(4):
        nxt = (i + 1) % 4
        ring[f"b/f{i}.c"] = (f"int apy__b_f{nxt}(int);\n"
                             f"int apy__b_f{i}(int n) {{ return n ? "
                             f"apy__b_f{nxt}(n - 1) : 0; }}\n")
    files = dict(GOOD, **ring)
    files["b/help.c"] = ("int apy__b_f0(int);\n"
                         "int apy__b_helper(void) { return apy__b_f0(3); }\n")
    build(tmp_path, LAYERS, files)
    rc, out = check(tmp_path)
    assert rc == 1
    assert "circle of 4 files calling each other" in out


def test_marks_show_reach(tmp_path):
    files = dict(GOOD)
    files["a/low.c"] += "int apy__a_inner(void) { return 3; }\n"
    files["b/help.c"] = ("int apy__a_inner(void);\n"
                         "int apy_b_lonely(void) { return 0; }\n"
                         "int apy__b_helper(void) { return apy__a_inner()"
                         " + apy_b_lonely(); }\n")
    build(tmp_path, LAYERS, files)
    rc, out = check(tmp_path)
    assert rc == 1
    assert "apy__a_inner (a/low.c) is marked internal to a but used by b" \
        in out
    assert "apy_b_lonely (b/help.c) is only used inside b" in out


def test_private_header_of_another_layer(tmp_path):
    files = dict(GOOD)
    files["b/top.c"] = '#include "../a/priv.h"\n' + files["b/top.c"]
    build(tmp_path, LAYERS, files, {"src/a/priv.h": "\n"})
    rc, out = check(tmp_path)
    assert rc == 1
    assert "b/top.c includes a/priv.h, a private header of layer a" in out


def test_long_function(tmp_path):
    files = dict(GOOD)
    body = "".join(f"    n += {i};\n" for i in range(170))
    files["b/help.c"] = ("int apy__b_helper(void)\n{\n    int n = 0;\n"
                         + body + "    return n;\n}\n")
    build(tmp_path, LAYERS, files)
    rc, out = check(tmp_path)
    assert rc == 1
    assert "apy__b_helper() is 174 lines" in out


def test_levels(tmp_path):
    ok = [("a", ["a"], []), ("b", ["b"], ["a"], ["help", "top"])]
    build(tmp_path / "ok", ok, GOOD)
    assert check(tmp_path / "ok")[0] == 0
    upside_down = [("a", ["a"], []), ("b", ["b"], ["a"], ["top", "help"])]
    build(tmp_path / "upside_down", upside_down, GOOD)
    rc, out = check(tmp_path / "upside_down")
    assert rc == 1
    assert "b/top.c (level 0) calls b/help.c (level 1), not below it" in out
    missing = [("a", ["a"], []), ("b", ["b"], ["a"], ["help"])]
    build(tmp_path / "missing", missing, GOOD)
    rc, out = check(tmp_path / "missing")
    assert "b/top.c is on no level of layer b" in out


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
