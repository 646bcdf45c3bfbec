#!/usr/bin/env python3
"""scripts/check-func-length.py -- lists the C functions longer than the project's limit.

The project guide keeps functions to about 80 lines, dispatch tables excepted (issue 20: "no
function in the tree is over ~80 lines except dispatch tables"). This lists every function
definition in the library and driver sources (compiler/ codegen/ frontends/ ir/ runtime/; tests
are not counted) whose definition, from the line with its name to its closing brace, is longer
than the limit, longest first, and exits 1 when any is not in ALLOWED below.

    scripts/check-func-length.py            # the tree this script is in; exit 1 on an over-long one
    scripts/check-func-length.py --all      # also the allowed ones, marked
    scripts/check-func-length.py --max 60   # another limit

It reads C as text: comments, strings and preprocessor lines are blanked, then a '{' at brace
depth 0 that follows a ')' opens a function whose name is the identifier before the matching
'('. That is enough for this tree's style (no K&R definitions, no function bodies made by macros).
Only python3's standard library.
"""
import argparse
import os
import re
import sys

DIRS = ("compiler", "codegen", "frontends", "ir", "runtime")
LIMIT = 80

# Functions that may be longer, each with why: a dispatch table (a switch or a table of cases
# whose rows are independent, where splitting would only scatter them). "path:function".
ALLOWED = {
    # (none yet: add "dir/file.c:function": "why" rows here)
}


def blank_noncode(text):
    """text with comments, string and character literals and preprocessor lines replaced by
    spaces (newlines kept, so line numbers stay)."""
    out = []
    i, n = 0, len(text)
    line_start = True
    while i < n:
        c = text[i]
        if line_start and c == "#" or (line_start and c in " \t" and text[i:].lstrip(" \t").startswith("#")):
            # a preprocessor line, with its backslash continuations
            j = i
            while j < n:
                k = text.find("\n", j)
                if k < 0:
                    k = n
                if k > 0 and text[k - 1] == "\\":
                    j = k + 1
                    continue
                break
            out.append(re.sub(r"[^\n]", " ", text[i:k]))
            i = k
            continue
        if text.startswith("/*", i):
            k = text.find("*/", i + 2)
            k = n if k < 0 else k + 2
            out.append(re.sub(r"[^\n]", " ", text[i:k]))
            i = k
            line_start = False
            continue
        if text.startswith("//", i):
            k = text.find("\n", i)
            k = n if k < 0 else k
            out.append(" " * (k - i))
            i = k
            continue
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + c)
            i = j
            line_start = False
            continue
        out.append(c)
        if c == "\n":
            line_start = True
        elif c not in " \t":
            line_start = False
        i += 1
    return "".join(out)


IDENT = re.compile(r"[A-Za-z_][A-Za-z_0-9]*$")


def functions(text):
    """(name, first line, last line) of every function definition in C source text."""
    code = blank_noncode(text)
    found = []
    depth = 0
    stmt_start = 0  # where the current top-level declaration began
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if c == "{" and depth == 0:
            head = code[stmt_start:i].rstrip()
            end = close_brace(code, i)
            if head.endswith(")") and "=" not in head.split("(")[0]:
                name = function_name(head)
                if name:
                    name_at = stmt_start + head.rfind(name, 0, matching_paren(head))
                    first = code.count("\n", 0, name_at) + 1
                    last = code.count("\n", 0, end) + 1
                    found.append((name, first, last))
            i = end + 1
            stmt_start = i
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == ";" and depth == 0:
            stmt_start = i + 1
        i += 1
    return found


def close_brace(code, i):
    """Index of the '}' that closes the '{' at i (the end of the text if none)."""
    depth = 0
    for j in range(i, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(code) - 1


def matching_paren(head):
    """Index of the '(' that matches the ')' ending head."""
    depth = 0
    for j in range(len(head) - 1, -1, -1):
        if head[j] == ")":
            depth += 1
        elif head[j] == "(":
            depth -= 1
            if depth == 0:
                return j
    return -1


def function_name(head):
    """The identifier before the parameter list's '(' ; None for what is not a definition
    (a struct or an initializer)."""
    open_at = matching_paren(head)
    if open_at <= 0:
        return None
    m = IDENT.search(head[:open_at].rstrip())
    if not m or m.group(0) in ("if", "while", "for", "switch", "return", "sizeof"):
        return None
    return m.group(0)


def source_files(root):
    for d in DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, d)):
            dirnames.sort()
            for f in sorted(filenames):
                if f.endswith((".c", ".h")):
                    yield os.path.join(dirpath, f)


def main():
    ap = argparse.ArgumentParser(description="C functions over the length limit (tests excluded).")
    ap.add_argument("--max", type=int, default=LIMIT, help="lines a function may have (default %(default)s)")
    ap.add_argument("--all", action="store_true", help="also list the allowed ones")
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="the tree (default: the one this script is in)")
    a = ap.parse_args()
    rows = []
    for path in source_files(a.root):
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        rel = os.path.relpath(path, a.root)
        for name, first, last in functions(text):
            lines = last - first + 1
            if lines > a.max:
                rows.append((lines, rel, first, name))
    rows.sort(key=lambda r: (-r[0], r[1], r[2]))
    bad = 0
    for lines, rel, first, name in rows:
        why = ALLOWED.get("%s:%s" % (rel, name))
        if why and not a.all:
            continue
        bad += not why
        print("%s:%d: %s: %d lines%s" % (rel, first, name, lines, "  (allowed: %s)" % why if why else ""))
    stale = [k for k in ALLOWED if not any("%s:%s" % (r[1], r[3]) == k for r in rows)]
    for k in stale:
        print("%s: allowed but not over %d lines (any more): drop it from ALLOWED" % (k, a.max))
    if bad or stale:
        print("%d function%s over %d lines" % (bad, "" if bad == 1 else "s", a.max), file=sys.stderr)
    return 1 if bad or stale else 0


if __name__ == "__main__":
    sys.exit(main())
