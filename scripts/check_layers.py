#!/usr/bin/python3
"""The layering rules of docs/extending.md, checked on every #include "...".

  src/     the engine: includes only src/ (and system headers)
  optim/   src/, optim/
  models/  src/, models/
  tasks/   src/, tasks/
  app/     anything above (the trainer, run files, CLI)

and no circle between modules, where a module is the pair NAME.c / NAME.h
and module A depends on module B when A.c or A.h includes B.h.  Prints one
line per violation and exits 1, or prints a summary and exits 0."""
import os
import re
import sys

ALLOWED = {
    "src": {"src"},
    "optim": {"src", "optim"},
    "models": {"src", "models"},
    "tasks": {"src", "tasks"},
    "app": {"src", "optim", "models", "tasks", "app"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(path):
    return path.split("/", 1)[0]


def main(root):
    os.chdir(root)
    files = []
    for layer in ALLOWED:
        for d, _, names in os.walk(layer):
            files += [os.path.join(d, n) for n in names if n.endswith((".c", ".h"))]
    problems = []
    deps = {}  # module -> set of modules
    for f in sorted(files):
        text = open(f, encoding="utf-8").read()
        mod = os.path.splitext(f)[0]
        for inc in INCLUDE.findall(text):
            target = os.path.normpath(os.path.join(os.path.dirname(f), inc))
            if not os.path.exists(target):
                problems.append(f"{f}: includes \"{inc}\", which does not exist")
                continue
            tl = layer_of(target)
            if tl not in ALLOWED[layer_of(f)]:
                problems.append(f"{f}: includes {target}: {layer_of(f)}/ must not depend on {tl}/")
            tmod = os.path.splitext(target)[0]
            if tmod != mod:
                deps.setdefault(mod, set()).add(tmod)
    # circles: depth-first search for a back edge
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(deps.get(m, ())):
            if state.get(n) == 1:
                cyc = stack[stack.index(n):] + [n]
                problems.append("circle between modules: " + " -> ".join(cyc))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(deps):
        if m not in state:
            visit(m)
    for p in problems:
        print("check_layers: " + p)
    if problems:
        return 1
    print(f"check_layers: {len(files)} files, layering and module graph ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")))
