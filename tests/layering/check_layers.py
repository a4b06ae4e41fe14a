# SPDX-License-Identifier: MIT
"""The layering check: the order of src/ as the build declares it, verified
on the compiled objects.

The layers, their directories and the layers each may use come from
layers.json, which src/CMakeLists.txt writes from its apyrun_layer() calls,
so the order is stated once. Each object's global symbols (nm -P) give a
graph: file A -> file B when A references a symbol B defines. The check
fails on
  - a call from one layer into a layer it does not declare (USES), or a
    USES the layer's code does not need;
  - a cycle between layers, or between directories (src/loop/handles
    counts as src/loop) ;
  - a circle of more than 3 files calling each other, or, in a layer that
    declares LEVELS, a call to a file on the same level or above;
  - a quoted #include of another layer's private header, or a header in
    include/apyrun/ that only its own layer includes (a private header in
    the public place);
  - a name's mark not matching its reach: apy__<layer>_* (two underscores)
    names are shared between the files of one layer and never used outside
    it; apy_* names defined in a layer are its interface, used by another
    layer (or by main.c);
  - a source file over 1000 lines or a function over 160 lines.
With --report it prints the graph and the sizes even when all is well.
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys

MAX_FILE_LINES = 1000
MAX_FUNC_LINES = 160
MAX_CIRCLE = 3


def load_layers(path):
    with open(path, encoding="utf-8") as f:
        layers = json.load(f)
    for layer in layers:
        layer["objects"] = [o for o in layer["objects"].split(";") if o]
        layer["uses"] = [u for u in layer["uses"].split(";") if u]
        layer["dirs"] = [d for d in layer["dirs"].split(";") if d]
        layer["levels"] = [lv.split() for lv in
                           layer.get("levels", "").split("|") if lv.strip()]
    return layers


def source_of(obj):
    """src-relative path of an object: CMakeFiles/apy_x.dir/<path>.c.o."""
    m = re.search(r"CMakeFiles/[^/]+\.dir/(.+)\.o$", obj)
    if not m:
        raise SystemExit(f"layering: cannot place object {obj}")
    return m.group(1)


def symbols(obj):
    out = subprocess.run(["nm", "-P", obj], check=True, text=True,
                         capture_output=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind in "TDBRCGSV" and kind.isupper():
            defined.add(name)
    return defined, undefined


def directory(src):
    d = os.path.dirname(src)
    return "loop" if d.startswith("loop/") else d


def strongly_connected(nodes, edges):
    """Tarjan's algorithm; returns the components with more than one node
    (or a self-loop is ignored: a file calling itself is fine)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def function_lengths(text):
    """(name, first line, lines) of each function definition: PEP 7 puts a
    definition's braces in column 0, which is all this needs."""
    lines = text.split("\n")
    out = []
    start = None
    for i, line in enumerate(lines):
        if line.startswith("{") and start is None:
            start = i
        elif line.startswith("}") and start is not None:
            j = start - 1
            name = "?"
            while j >= 0 and j >= start - 6:
                m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", lines[j])
                if m:
                    name = m.group(1)
                    break
                j -= 1
            if not re.match(r"^\s*(static\s+)?(const\s+)?[A-Za-z_].*=",
                            lines[start - 1] if start else ""):
                out.append((name, start + 1, i - start + 1))
            start = None
    return out


INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("layers_json")
    ap.add_argument("src_dir")
    ap.add_argument("include_dir")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--edges", metavar="DIR", help="print the file edges "
                    "inside src/DIR, with their symbols, and exit")
    ap.add_argument("--main-object", help="main.c's object (its calls are "
                    "the top of the graph)")
    args = ap.parse_args()

    layers = load_layers(args.layers_json)
    by_name = {layer["name"]: layer for layer in layers}
    layer_of_src = {}
    defs = {}
    undefs = {}
    for layer in layers:
        for obj in layer["objects"]:
            src = source_of(obj)
            layer_of_src[src] = layer["name"]
            d, u = symbols(obj)
            undefs[src] = u
            for name in d:
                defs[name] = src
    problems = []
    main_uses = set()
    if args.main_object:
        main_uses = symbols(args.main_object)[1]

    # Symbol graph.
    file_edges = collections.defaultdict(set)
    edge_syms = collections.defaultdict(set)
    for src, names in undefs.items():
        for name in names:
            to = defs.get(name)
            if to is not None and to != src:
                file_edges[src].add(to)
                edge_syms[(src, to)].add(name)

    if args.edges:
        for (a, b), names in sorted(edge_syms.items()):
            if a.startswith(args.edges + "/") and b.startswith(args.edges + "/"):
                print(f"{a} -> {b}: {' '.join(sorted(names))}")
        return 0

    # 0. The mark of a name shows its reach.
    used_from = collections.defaultdict(set)
    for src, names in undefs.items():
        for name in names:
            if name in defs:
                used_from[name].add(layer_of_src[src])
    for name, src in sorted(defs.items()):
        home = layer_of_src[src]
        outside = used_from[name] - {home}
        if name.startswith("apy__") and outside:
            problems.append(f"{name} ({src}) is marked internal to {home} "
                            f"but used by {' '.join(sorted(outside))}")
        elif name.startswith("apy_") and not name.startswith("apy__") \
                and not outside and name not in main_uses:
            problems.append(f"{name} ({src}) is only used inside {home}: "
                            f"name it apy__{name[4:]} (or make it static)")

    # 1. Layer order.
    for name, layer in by_name.items():
        for use in layer["uses"]:
            if use not in by_name:
                problems.append(f"layer {name} uses unknown layer {use}")
    layer_edges = collections.defaultdict(set)
    for (a, b), names in sorted(edge_syms.items()):
        la, lb = layer_of_src[a], layer_of_src[b]
        if la == lb:
            continue
        layer_edges[la].add(lb)
        if lb not in by_name[la]["uses"]:
            problems.append(
                f"{a} ({la}) calls {b} ({lb}), a layer {la} may not use: "
                + ", ".join(sorted(names)))

    # A declaration the code does not need hides nothing: keep USES exact.
    for name, layer in by_name.items():
        for use in layer["uses"]:
            if use in by_name and use not in layer_edges[name]:
                problems.append(f"layer {name} declares USES {use} but "
                                "calls nothing of it: drop it")

    # 2. Cycles between layers (declared or actual) and directories.
    declared = {n: set(l["uses"]) for n, l in by_name.items()}
    for comp in strongly_connected(by_name, declared):
        problems.append("declared layer cycle: " + " <-> ".join(comp))
    for comp in strongly_connected(by_name, layer_edges):
        problems.append("layer cycle: " + " <-> ".join(comp))
    dir_edges = collections.defaultdict(set)
    for a, tos in file_edges.items():
        for b in tos:
            if directory(a) != directory(b):
                dir_edges[directory(a)].add(directory(b))
    dirs = {directory(s) for s in layer_of_src}
    for comp in strongly_connected(dirs, dir_edges):
        why = []
        for (a, b), names in sorted(edge_syms.items()):
            if directory(a) in comp and directory(b) in comp \
                    and directory(a) != directory(b):
                why.append(f"    {a} -> {b}: {', '.join(sorted(names))}")
        problems.append("directory cycle: " + " <-> ".join(comp) + "\n"
                        + "\n".join(why))

    # 3. Circles of files.
    for comp in strongly_connected(layer_of_src, file_edges):
        if len(comp) > MAX_CIRCLE:
            problems.append(f"circle of {len(comp)} files calling each "
                            "other: " + " ".join(comp))

    # 3b. Levels inside a layer.
    for name, layer in by_name.items():
        if not layer["levels"]:
            continue
        base = layer["dirs"][0]
        level = {}
        for i, files in enumerate(layer["levels"]):
            for f in files:
                level[f"{base}/{f}.c"] = i
        for src, home in layer_of_src.items():
            if home == name and src not in level:
                problems.append(f"{src} is on no level of layer {name} "
                                "(LEVELS in src/CMakeLists.txt)")
        for (a, b), names in sorted(edge_syms.items()):
            if a in level and b in level and level[a] <= level[b]:
                problems.append(f"{a} (level {level[a]}) calls {b} (level "
                                f"{level[b]}), not below it: "
                                + ", ".join(sorted(names)))

    # 4. Headers: private ones stay beside their sources.
    public = {}
    for h in sorted(os.listdir(os.path.join(args.include_dir, "apyrun"))):
        if h.endswith(".h"):
            public["apyrun/" + h] = set()
    includers = sorted(layer_of_src) + ["main.c"]
    for src in includers:
        user = layer_of_src.get(src, "main")
        # A source and the local headers it includes, followed through.
        todo, seen = [os.path.join(args.src_dir, src)], set()
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            here = os.path.dirname(path)
            for inc in INCLUDE.findall(text):
                if inc in public:
                    public[inc].add(user)
                    todo.append(os.path.join(args.include_dir, inc))
                    continue
                target = os.path.normpath(os.path.join(here, inc))
                if not os.path.exists(target):
                    continue
                todo.append(target)
                rel = os.path.relpath(target, args.src_dir)
                if rel.startswith(".."):
                    continue
                owner = None
                for name, layer in by_name.items():
                    if os.path.dirname(rel) in layer["dirs"]:
                        owner = name
                if owner is not None and owner != layer_of_src.get(src):
                    problems.append(f"{src} includes {rel}, a private "
                                    f"header of layer {owner}")
    for h, users in sorted(public.items()):
        if len(users) <= 1:
            problems.append(f"include/{h} is public but only layer "
                            f"{''.join(users) or '(none)'} includes it: "
                            "move it beside its sources")

    # 5. Sizes.
    long_funcs = []
    for root, _, files in os.walk(args.src_dir):
        for fn in files:
            if not fn.endswith((".c", ".h")):
                continue
            path = os.path.join(root, fn)
            rel = os.path.relpath(path, args.src_dir)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            n = text.count("\n")
            if n > MAX_FILE_LINES:
                problems.append(f"{rel}: {n} lines (limit {MAX_FILE_LINES})")
            for name, line, length in function_lengths(text):
                long_funcs.append((length, rel, line, name))
                if length > MAX_FUNC_LINES:
                    problems.append(f"{rel}:{line}: {name}() is {length} "
                                    f"lines (limit {MAX_FUNC_LINES})")

    if args.report:
        print("layers (-> the layers each calls):")
        for name in by_name:
            print(f"  {name}: {' '.join(sorted(layer_edges[name])) or '-'}"
                  f"   (may use: {' '.join(by_name[name]['uses']) or '-'})")
        print("circles of files:")
        for comp in strongly_connected(layer_of_src, file_edges):
            print(f"  {len(comp)}: {' '.join(comp)}")
        print("longest functions:")
        for length, rel, line, name in sorted(long_funcs)[-10:]:
            print(f"  {length:4d} {rel}:{line} {name}")
    if not layer_of_src:
        problems.append("no objects found: is layers.json from this build?")
    for p in problems:
        print("layering:", p)
    print(f"layering: {len(layer_of_src)} files in {len(by_name)} layers, "
          f"{sum(len(v) for v in file_edges.values())} file edges, "
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
