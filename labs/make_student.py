"""
make_student.py: write the student copy of this project for the course labs.

    python labs/make_student.py OUT_DIR              # every lab's regions stubbed
    python labs/make_student.py OUT_DIR --lab=3      # only lab 3 (also --lab=2,4 or --lab=4-6)
    python labs/make_student.py OUT_DIR --force      # OUT_DIR may already hold files

The solutions live in the project itself (infini.py), between comment lines

    <indent># LAB <n> BEGIN <name>
    ...the body a student writes...
    <indent># LAB <n> END

The student copy is the project's files (those git tracks plus the untracked ones it does
not ignore; without git, a walk that skips .git, caches and the patterns of .gitignore) in
which the body of every chosen region is replaced by one line,

    raise NotImplementedError("Lab <n>: implement <name> (see labs/lab<n>_<topic>.md)")

indented like the body. The marker lines stay, so students see where their code goes and
everything outside the bodies is byte for byte the project's. SOLUTION_PATHS (speed/fast.py,
a fast attention layer with every forward and backward written out), the tests that
import them, and INSTRUCTOR_PATHS (tests/test_labs.py) are left out. Any other file that
imports them gets a warning, unless it guards the import with `except ImportError` and
runs without it (train.py: --attention=auto falls back to the plain layer).
Errors are one line and exit with status 2.
"""
import argparse
import ast
import os
import re
import shutil
import subprocess
import sys

LABS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(LABS_DIR)

MARKER = re.compile(r"^([ \t]*)# LAB (\d+) (BEGIN|END)\b[ \t]*(.*?)[ \t]*$")
NAME_OK = re.compile(r"^[A-Za-z_][\w ,.()'=+-]*$")
# files that hold the lab solutions in another form: never copied to students
SOLUTION_PATHS = ("speed/fast.py", "tests/test_speed.py")
# the instructor's checks of the labs themselves: no use to students
INSTRUCTOR_PATHS = ("tests/test_labs.py",)
# walking without git: always skipped, whatever .gitignore says
SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", ".benchmarks", ".mypy_cache", ".venv", "venv"}
SKIP_SUFFIXES = (".pyc", ".pyo")


class LabError(Exception):
    """A problem the user must fix; printed as one line."""


# -----------------------------------------------------------------------------
# regions


def find_regions(text, path):
    """[(lab, name, begin line index, end line index)] of one file's marker pairs (0-based
    indices of the BEGIN and END lines). LabError, naming file and line, if unbalanced."""
    regions, open_at = [], None
    for i, line in enumerate(text.splitlines()):
        m = MARKER.match(line)
        if not m:
            continue
        lab, kind, name = int(m.group(2)), m.group(3), m.group(4)
        if kind == "BEGIN":
            if open_at is not None:
                raise LabError(f"{path}:{i + 1}: LAB {lab} BEGIN inside the region opened at line {open_at[2] + 1}")
            if not NAME_OK.match(name or ""):
                raise LabError(f"{path}:{i + 1}: LAB {lab} BEGIN needs a plain name (letters, digits, _ , . ( ) -), "
                               f"got {name!r}")
            open_at = (lab, name, i)
        else:
            if open_at is None:
                raise LabError(f"{path}:{i + 1}: LAB {lab} END without a BEGIN before it")
            if open_at[0] != lab:
                raise LabError(f"{path}:{i + 1}: LAB {lab} END closes the LAB {open_at[0]} region "
                               f"opened at line {open_at[2] + 1}")
            if i == open_at[2] + 1:
                raise LabError(f"{path}:{i + 1}: the LAB {lab} region {open_at[1]!r} is empty")
            regions.append((open_at[0], open_at[1], open_at[2], i))
            open_at = None
    if open_at is not None:
        raise LabError(f"{path}:{open_at[2] + 1}: LAB {open_at[0]} BEGIN {open_at[1]} has no END")
    return regions


def handout(lab, root=ROOT):
    """The handout's path relative to root, labs/lab<n>_<topic>.md (or labs/README.md)."""
    prefix = f"lab{lab}_"
    names = sorted(f for f in os.listdir(os.path.join(root, "labs"))
                   if f.startswith(prefix) and f.endswith(".md")) if os.path.isdir(os.path.join(root, "labs")) else []
    return f"labs/{names[0]}" if names else "labs/README.md"


def stub(text, path, labs, root=ROOT):
    """text with the bodies of the regions of the chosen labs replaced. -> (text, stubbed regions)."""
    regions = find_regions(text, path)
    lines = text.splitlines(keepends=True)
    out, done, last = [], [], 0
    for lab, name, b, e in regions:
        if lab not in labs:
            continue
        body = [l for l in lines[b + 1:e] if l.strip()]
        if not body:
            raise LabError(f"{path}:{b + 1}: the LAB {lab} region {name!r} holds only blank lines")
        indent = min((l[: len(l) - len(l.lstrip(" \t"))] for l in body), key=len)
        newline = "\r\n" if lines[b].endswith("\r\n") else "\n"
        message = f"Lab {lab}: implement {name} (see {handout(lab, root)})"
        out += lines[last:b + 1]
        out.append(f'{indent}raise NotImplementedError("{message}"){newline}')
        last = e
        done.append((lab, name))
    out += lines[last:]
    return "".join(out), done


# -----------------------------------------------------------------------------
# the project's files


def project_files(root, skip_under=None):
    """Relative paths (with /) of the project's files, sorted."""
    files = None
    try:
        top = subprocess.run(["git", "-C", root, "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, check=True).stdout.strip()
        if top and os.path.samefile(top, root):
            listing = subprocess.run(["git", "-C", root, "ls-files", "-z", "--cached", "--others",
                                      "--exclude-standard"], capture_output=True, check=True).stdout
            files = [p for p in listing.decode("utf-8").split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = None
    if files is None:
        files = walk_files(root)
    keep = []
    for rel in sorted(set(files)):
        full = os.path.join(root, rel)
        if not os.path.isfile(full):          # tracked but deleted in the working tree
            continue
        if skip_under and os.path.abspath(full).startswith(skip_under + os.sep):
            continue                           # OUT_DIR inside the project: never copy a copy
        keep.append(rel)
    return keep


def gitignore_patterns(root):
    path = os.path.join(root, ".gitignore")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [l.strip() for l in f if l.strip() and not l.startswith("#") and not l.startswith("!")]


def ignored(rel, is_dir, patterns):
    import fnmatch
    name = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        dir_only = pat.endswith("/")
        p = pat.rstrip("/").lstrip("/")
        if dir_only and not is_dir:
            continue
        if "/" in p:
            if fnmatch.fnmatch(rel, p):
                return True
        elif fnmatch.fnmatch(name, p):
            return True
    return False


def walk_files(root):
    """The project's files without git: skip SKIP_DIRS, compiled files and .gitignore's patterns."""
    patterns = gitignore_patterns(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames
                             if d not in SKIP_DIRS and not ignored(rel_dir + d, True, patterns))
        for f in filenames:
            rel = rel_dir + f
            if not f.endswith(SKIP_SUFFIXES) and not ignored(rel, False, patterns):
                found.append(rel)
    return found


def is_solution(rel):
    return any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in SOLUTION_PATHS)


def imports(path):
    """[(line number, dotted name)] named by a Python file's import lines: `import a.b`
    gives a.b, `from a import b, c` gives a.b and a.c (b and c may be modules)."""
    found = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            m = re.match(r"\s*from\s+([\w.]+)\s+import\s+\(?([\w\s,]+)", line)
            if m:
                found += [(n, f"{m.group(1)}.{name.split()[0]}") for name in m.group(2).split(",") if name.strip()]
                continue
            m = re.match(r"\s*import\s+([\w.]+(?:\s*,\s*[\w.]+)*)", line)
            if m:
                found += [(n, name.strip()) for name in m.group(1).split(",")]
    return found


def imported(path, modules):
    """[(line number, module)] for each of modules that the file imports, or imports from."""
    return [(n, m) for n, name in imports(path) for m in sorted(modules)
            if name == m or name.startswith(m + ".")]


def optional_imports(path):
    """Line numbers of the imports a file makes inside `try:` with an `except ImportError`
    (or ModuleNotFoundError): the file runs without them."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            tree = ast.parse(f.read())
    except SyntaxError:
        return set()

    def catches(t):
        names = t.elts if isinstance(t, ast.Tuple) else [t]
        return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names)

    return {n.lineno for node in ast.walk(tree) if isinstance(node, ast.Try)
            and any(h.type is not None and catches(h.type) for h in node.handlers)
            for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))}


def module_of(rel):
    """The name a file is imported by: speed/fast.py -> speed.fast, tests/test_x.py ->
    test_x (pytest puts tests/ on the path), train.py -> train."""
    if rel.startswith("tests/"):
        return rel.rsplit("/", 1)[-1].removesuffix(".py")
    return rel.removesuffix(".py").replace("/", ".")


def leave_out(src, files):
    """-> (files left out: {rel: why}, warnings). SOLUTION_PATHS, and the tests that import
    them (they could not even be collected); other files that import them get a warning."""
    left = {rel: "holds solutions" for rel in files if is_solution(rel)}
    left.update({rel: "instructor only" for rel in files if rel in INSTRUCTOR_PATHS})
    changed = True
    while changed:                             # a test importing a left-out test goes too
        changed = False
        modules = {module_of(rel) for rel in left}
        for rel in files:
            if rel in left or not rel.endswith(".py") or not rel.startswith("tests/"):
                continue
            hit = [m for _, m in imported(os.path.join(src, rel), modules)]
            if hit:
                left[rel] = f"imports {hit[0]}"
                changed = True
    modules = {module_of(rel) for rel in left}
    warnings = []
    for rel in files:
        if not rel.endswith(".py") or rel in left:
            continue
        hits = imported(os.path.join(src, rel), modules)
        optional = optional_imports(os.path.join(src, rel)) if hits else set()
        warnings += [f"{rel}:{n} imports {m}, which the student copy leaves out" for n, m in hits if n not in optional]
    return left, warnings


# -----------------------------------------------------------------------------
# the command


def parse_labs(spec):
    """'3' -> {3}; '2,4' -> {2, 4}; '4-6' -> {4, 5, 6}."""
    labs = set()
    try:
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            labs.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise LabError(f"--lab must be a number, a list (2,4) or a range (4-6), got {spec!r}") from None
    if not labs:
        raise LabError(f"--lab selects no lab: {spec!r}")
    return labs


def make_student(out_dir, labs=None, force=False, src=ROOT):
    """Write the student copy of the project at src to out_dir. -> summary dict."""
    src, out = os.path.abspath(src), os.path.abspath(out_dir)
    if out == src or src.startswith(out + os.sep):
        raise LabError(f"OUT_DIR {out_dir} is the project or holds it: choose a new folder")
    if os.path.exists(out) and not os.path.isdir(out):
        raise LabError(f"OUT_DIR {out_dir} exists and is not a folder")
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise LabError(f"OUT_DIR {out_dir} exists and is not empty (use --force to write into it)")
    files = project_files(src, skip_under=out)
    # read and check every marked file before writing anything
    stubbed, texts, all_labs = [], {}, set()
    for rel in files:
        if rel.endswith(".py") and not is_solution(rel):
            with open(os.path.join(src, rel), encoding="utf-8", newline="") as f:
                text = f.read()
            if "# LAB " not in text:
                continue
            regions = find_regions(text, rel)
            all_labs.update(lab for lab, *_ in regions)
            texts[rel] = text
    chosen = all_labs if labs is None else set(labs)
    missing = sorted(chosen - all_labs)
    if missing:
        raise LabError(f"no region is marked for lab {', '.join(map(str, missing))} "
                       f"(marked labs: {', '.join(map(str, sorted(all_labs))) or 'none'})")
    left_out, warnings = leave_out(src, files)
    copied = 0
    for rel in files:
        if rel in left_out:
            continue
        src_path, dst_path = os.path.join(src, rel), os.path.join(out, *rel.split("/"))
        os.makedirs(os.path.dirname(dst_path), exist_ok=True)
        if rel in texts:
            new, done = stub(texts[rel], rel, chosen, src)
            if done:
                with open(dst_path, "w", encoding="utf-8", newline="") as f:
                    f.write(new)
                shutil.copymode(src_path, dst_path)
                stubbed += [(rel, lab, name) for lab, name in done]
                copied += 1
                continue
        shutil.copy2(src_path, dst_path)
        copied += 1
    return {"out": out, "files": copied, "stubbed": stubbed, "left_out": left_out, "warnings": warnings,
            "labs": sorted(chosen)}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python labs/make_student.py",
        description="Write the student copy of the project: every marked lab region stubbed.")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="a new (or empty) folder for the student copy")
    parser.add_argument("--lab", help="stub only these labs: 3, 2,4 or 4-6 (default: all)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty OUT_DIR, replacing files of the same names")
    parser.add_argument("--src", default=ROOT, help=argparse.SUPPRESS)  # the project to copy (tests)
    args = parser.parse_args(argv)
    try:
        labs = parse_labs(args.lab) if args.lab is not None else None
        s = make_student(args.out_dir, labs, args.force, args.src)
    except LabError as e:
        print(f"make_student: error: {e}", file=sys.stderr)
        return 2
    per_lab = {}
    for _, lab, _ in s["stubbed"]:
        per_lab[lab] = per_lab.get(lab, 0) + 1
    print(f"wrote the student copy to {s['out']}: {s['files']} files, "
          f"{len(s['stubbed'])} regions stubbed (" + ", ".join(f"lab {k}: {v}" for k, v in sorted(per_lab.items())) + ")")
    if s["left_out"]:
        print("left out: " + ", ".join(f"{rel} ({why})" for rel, why in s["left_out"].items()))
    for w in s["warnings"]:
        print(f"warning: {w}")
    print(f"students check a lab with: cd {args.out_dir} && python -m pytest labs/tests/test_lab{s['labs'][0]}.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
