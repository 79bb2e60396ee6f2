"""The course labs (labs/): the student copy that labs/make_student.py writes fails every
lab's checks, the project itself passes them, and outside the marked regions the student
copy is the project byte for byte."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "labs"))
import make_student  # noqa: E402

LABS = [1, 2, 3, 4, 5, 6]
MARKER = re.compile(r"^[ \t]*# LAB (\d+) (BEGIN|END)\b")
STUB = re.compile(r'^[ \t]*raise NotImplementedError\("Lab (\d+): implement ([^"]+) \(see (labs/[\w.]+)\)"\)$')


def run_make(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "labs", "make_student.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def run_labs(cwd, *tests):
    """pytest on lab checks in a fresh interpreter, in the project at cwd."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=short", "-rf",
                           *tests], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("labs") / "student"
    r = run_make(out)
    assert r.returncode == 0, r.stderr
    assert "speed/fast.py (holds solutions)" in r.stdout or not os.path.isdir(os.path.join(ROOT, "speed"))
    return str(out)


def test_the_project_passes_every_lab():
    r = run_labs(ROOT, "labs/tests")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert re.search(r"\d+ passed", r.stdout) and "skipped" not in r.stdout


def test_the_student_copy_fails_every_lab(student):
    r = run_labs(student, "labs/tests")
    assert r.returncode != 0
    for lab in LABS:
        assert f"FAILED labs/tests/test_lab{lab}.py" in r.stdout, f"no check of lab {lab} failed"
        assert re.search(rf"Lab {lab}( builds on|: implement)", r.stdout), f"no 'Lab {lab}' message"
    assert "Lab 1: implement rmsnorm_backward (see labs/lab1_norm_matmul_gelu.md)" in r.stdout


def test_train_py_in_the_student_copy_trains_the_plain_layer(student):
    """Lab 5 trains the student's infini.py: without speed/fast.py, --attention=auto is the plain layer."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", "import numpy, train; print(train.attention_layer('auto', numpy)[0])"],
                       cwd=student, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "plain", r.stderr
    r = subprocess.run([sys.executable, "train.py", "--attention=fast"], cwd=student, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "--attention=fast needs speed/fast.py" in r.stderr


def test_each_lab_needs_only_the_labs_before_it(tmp_path):
    """With labs N..6 stubbed (1..N-1 done), lab N's checks fail, and only on lab N's code:
    no check of a lab waits for a later lab."""
    for lab in LABS:
        out = tmp_path / f"from{lab}"
        r = run_make(out, f"--lab={lab}-6")
        assert r.returncode == 0, r.stderr
        r = run_labs(str(out), f"labs/tests/test_lab{lab}.py")
        assert r.returncode != 0, f"lab {lab}'s checks pass on the student copy"
        asked = set(re.findall(r"Lab (\d+): implement", r.stdout))
        assert asked == {str(lab)}, f"lab {lab}'s checks ran into the code of labs {sorted(asked)}"
        assert "builds on" not in r.stdout


def regions_of(lines):
    """[(begin, end)] line indices of the marker pairs (checked balanced by make_student)."""
    out, begin = [], None
    for i, line in enumerate(lines):
        m = MARKER.match(line)
        if m and m.group(2) == "BEGIN":
            begin = i
        elif m:
            out.append((begin, i))
    return out


def outside(lines):
    """The lines outside the region bodies (markers included)."""
    keep, inside = [], False
    for line in lines:
        m = MARKER.match(line)
        if m:
            inside = m.group(2) == "BEGIN"
            keep.append(line)
        elif not inside:
            keep.append(line)
    return keep


def test_the_student_copy_is_the_project_outside_the_regions(student):
    ref_files = make_student.project_files(ROOT)
    left, _ = make_student.leave_out(ROOT, ref_files)
    kept = [f for f in ref_files if f not in left]
    got = sorted(os.path.relpath(os.path.join(d, f), student).replace(os.sep, "/")
                 for d, _, fs in os.walk(student) for f in fs)
    assert got == kept
    assert "speed/fast.py" not in got                          # a full solution in another form
    stubs = {}
    for rel in kept:
        with open(os.path.join(ROOT, rel), "rb") as f:
            ref = f.read()
        with open(os.path.join(student, rel), "rb") as f:
            stu = f.read()
        if ref == stu:
            continue
        ref_lines = ref.decode().splitlines(keepends=True)
        stu_lines = stu.decode().splitlines(keepends=True)
        assert outside(stu_lines) == outside(ref_lines), f"{rel} differs outside the lab regions"
        for b, e in regions_of(stu_lines):
            body = stu_lines[b + 1:e]
            assert len(body) == 1, f"{rel}:{b + 1}: the stubbed region holds {len(body)} lines"
            m = STUB.match(body[0].rstrip("\n"))
            assert m, f"{rel}:{b + 2}: not a NotImplementedError stub: {body[0]!r}"
            assert int(MARKER.match(stu_lines[b]).group(1)) == int(m.group(1))
            assert os.path.isfile(os.path.join(student, m.group(3))), f"the handout {m.group(3)} is missing"
            indent = len(body[0]) - len(body[0].lstrip())
            ref_body = [l for l in ref_lines[ref_lines.index(stu_lines[b]) + 1:] if l.strip()][0]
            assert indent == len(ref_body) - len(ref_body.lstrip()), f"{rel}:{b + 2}: the stub's indent"
            stubs.setdefault(int(m.group(1)), []).append(m.group(2))
    assert sorted(stubs) == LABS
    assert {"rmsnorm_backward", "matmul_backward", "gelu_backward"} <= set(stubs[1])
    assert {"causal_attention_forward", "causal_attention_backward", "rope_backward"} <= set(stubs[2])
    assert {"memory_retrieve_forward", "memory_retrieve_backward", "sigma_forward"} <= set(stubs[3])
    assert {"infini_segment_backward", "gate_forward", "gate_backward"} <= set(stubs[4])
    for lab in LABS:                                          # every lab has its handout
        assert os.path.isfile(os.path.join(student, make_student.handout(lab)))
    # the stubbed infini.py still imports
    r = subprocess.run([sys.executable, "-c", "import infini; print(infini.Config().memory)"], cwd=student,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "delta", r.stderr


def test_no_solution_line_is_anywhere_else():
    """A solution line (longer than 30 characters) of a region appears nowhere outside the
    regions: not in labs/ (checks, handouts), not in tests/, not elsewhere in infini.py."""
    texts = {}
    for rel in make_student.project_files(ROOT):
        if rel.endswith((".py", ".md")) and not make_student.is_solution(rel):
            with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
                texts[rel] = f.read().splitlines()
    solution = set()
    for rel, lines in texts.items():
        for b, e in regions_of(lines):
            solution.update(l.split("#")[0].strip() for l in lines[b + 1:e])
    solution = {l for l in solution if len(l) > 30}
    assert len(solution) > 40
    for rel, lines in texts.items():
        for n, line in enumerate(outside(lines), 1):
            code = line.split("#")[0].strip()
            assert code not in solution, f"{rel}: a solution line outside the lab regions: {code!r}"


def test_make_student_options(tmp_path):
    out = tmp_path / "only3"
    r = run_make(out, "--lab=3")
    assert r.returncode == 0, r.stderr
    with open(out / "infini.py") as f:
        text = f.read()
    labs = re.findall(r'raise NotImplementedError\("Lab (\d+)', text)
    assert labs and set(labs) == {"3"}
    assert "def rmsnorm_backward" in text and "dx = dout @ w.T" in text       # lab 1 stays solved
    # non-empty OUT_DIR: a one-line error, exit 2; --force writes into it
    r = run_make(out)
    assert r.returncode == 2 and "not empty" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_make(out, "--force")
    assert r.returncode == 0, r.stderr
    with open(out / "infini.py") as f:
        assert len(re.findall(r'raise NotImplementedError\("Lab', f.read())) > 15
    for bad, words in [("--lab=x", "--lab must be"), ("--lab=9", "no region is marked for lab 9")]:
        r = run_make(tmp_path / "new", bad)
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run_make(ROOT, "--force")
    assert r.returncode == 2 and "is the project" in r.stderr


@pytest.mark.parametrize("body, where", [
    ("def f():\n    # LAB 1 BEGIN f\n    return 1\n", "infini.py:2: LAB 1 BEGIN f has no END"),
    ("def f():\n    return 1\n    # LAB 1 END\n", "infini.py:3: LAB 1 END without a BEGIN"),
    ("def f():\n    # LAB 1 BEGIN f\n    # LAB 2 BEGIN g\n    return 1\n    # LAB 2 END\n    # LAB 1 END\n",
     "infini.py:3: LAB 2 BEGIN inside the region opened at line 2"),
    ("def f():\n    # LAB 1 BEGIN f\n    return 1\n    # LAB 2 END\n", "infini.py:4: LAB 2 END closes the LAB 1 region"),
])
def test_unbalanced_markers_name_file_and_line(tmp_path, body, where):
    src = tmp_path / "project"
    (src / "labs").mkdir(parents=True)
    (src / "infini.py").write_text(body)
    r = run_make(tmp_path / "out", f"--src={src}")
    assert r.returncode == 2 and where in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()                   # nothing written


def test_without_git_the_walk_skips_caches_and_ignored_files(tmp_path):
    src = tmp_path / "project"
    for rel, text in {"infini.py": "def f():\n    # LAB 1 BEGIN f\n    return 1\n    # LAB 1 END\n",
                      "labs/lab1_f.md": "# Lab 1\n", ".gitignore": "out*/\n*.bin\n",
                      "__pycache__/infini.cpython-311.pyc": "x", "out-run/ckpt.npz": "x",
                      "data/train.bin": "x", "data/prepare.py": "x = 1\n",
                      "speed/fast.py": "x = 1\n", "tests/test_speed.py": "import speed\n",
                      "tests/test_more.py": "from test_speed import x\n", "tests/test_f.py": "import infini\n",
                      "bench.py": "import numpy\nfrom speed import fast\n",
                      "train.py": "try:\n    from speed import fast\nexcept ImportError:\n    fast = None\n"}.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    r = run_make(tmp_path / "out", f"--src={src}")
    assert r.returncode == 0, r.stderr
    got = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "out").replace(os.sep, "/")
                 for d, _, fs in os.walk(tmp_path / "out") for f in fs)
    assert got == [".gitignore", "bench.py", "data/prepare.py", "infini.py", "labs/lab1_f.md", "tests/test_f.py",
                   "train.py"]
    assert "tests/test_more.py (imports test_speed)" in r.stdout
    assert "warning: bench.py:2 imports speed.fast, which the student copy leaves out" in r.stdout
    assert "train.py" not in r.stdout.split("warning:", 1)[-1]           # it runs without speed.fast
    assert (tmp_path / "out" / "infini.py").read_text() == (
        'def f():\n    # LAB 1 BEGIN f\n    raise NotImplementedError("Lab 1: implement f (see labs/lab1_f.md)")\n'
        '    # LAB 1 END\n')
