"""The lab checks import infini.py from the project they live in, two folders up, and the
gradient-check helpers from its tests/gradcheck.py."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if sys.path[:1] != [ROOT]:
    sys.path.insert(0, ROOT)
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(1, HERE)  # labcheck.py
TESTS = os.path.join(ROOT, "tests")
if TESTS not in sys.path:
    sys.path.insert(2, TESTS)  # gradcheck.py
