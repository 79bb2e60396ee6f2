"""memory_capacity.py: pairs written into one head's memory and read back with their keys."""
import numpy as np
import pytest

import memory_capacity as mc
from scripts import one_line_error, run


@pytest.mark.parametrize("rule", ["linear", "delta"])
def test_orthogonal_keys_read_back_exactly(rule):
    D, k = 8, 5
    sk = np.eye(D)[None, :k]                                               # one-hot keys, (1, k, D)
    v = np.random.default_rng(0).standard_normal((1, k, D))
    np.testing.assert_allclose(mc.read_back(sk, v, rule), v, atol=1e-5)    # eps in the divisions
    assert mc.found(mc.read_back(sk, v, rule), v) == 1.0


def test_one_key_written_twice_linear_averages_delta_overwrites():
    rng = np.random.default_rng(1)
    a = np.exp(rng.standard_normal(6))
    sk = np.stack([a, a])[None]                                            # the same key twice
    v = rng.standard_normal((1, 2, 6))
    np.testing.assert_allclose(mc.read_back(sk, v, "linear")[0, 0], v[0].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(mc.read_back(sk, v, "delta")[0, 0], v[0, 1] / 2, rtol=1e-6)


def test_random_keys_crowd_the_memory():
    table, ks = mc.capacity_table({**mc.DEFAULTS, "dims": "16", "keys": "1,64", "trials": 20})
    for row in table.values():
        assert row[0] == 1.0 and row[1] < 0.2


def test_cli_prints_the_table_and_bad_settings_are_one_line():
    r = run("memory_capacity.py", "--dims=16", "--keys=1,2", "--trials=5")
    assert r.returncode == 0 and "| linear | 16 | 100 |" in r.stdout and "largest k >= 90%" in r.stdout
    r = run("memory_capacity.py", "--rules=lru")
    assert r.returncode == 2
    one_line_error(r.stderr, "--rules")
