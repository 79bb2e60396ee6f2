"""A stand-in for CuPy that runs on the CPU and is as strict as CuPy about mixing arrays.

CuPy refuses what NumPy lets slide: an operation between a device array and a host
(NumPy) array raises, and so does converting a device array to NumPy implicitly. Code
that calls np.zeros, np.arange, np.asarray... where it should call xp.zeros, ... passes
every NumPy test and breaks only on a GPU. With this module installed as `cupy`, such
code fails on the CPU too. (One gap: np.asarray(device_array) passes here, since the
stand-in is a NumPy subclass; CuPy would refuse it. infini.to_numpy is the one way out.)

    fake = fakecupy.install(monkeypatch)      # sys.modules["cupy"] = fake, for one test
    x = fake.asarray(np_array)                # a DeviceArray; x.get() copies it back
"""

import sys
import types

import numpy as np


class MixedArraysError(TypeError):
    pass


def _check(values, where):
    for v in values:
        if isinstance(v, (list, tuple)):
            _check(v, where)
        elif isinstance(v, np.ndarray) and not isinstance(v, DeviceArray) and v.ndim > 0:
            raise MixedArraysError(f"{where}: a NumPy array mixed with device arrays (CuPy would raise)")


def _host(v):
    if isinstance(v, DeviceArray):
        return v.view(np.ndarray)
    if isinstance(v, (list, tuple)):
        return type(v)(_host(x) for x in v)
    if isinstance(v, dict):
        return {k: _host(x) for k, x in v.items()}
    return v


def _device(v):
    if isinstance(v, np.ndarray) and not isinstance(v, DeviceArray):
        return v.view(DeviceArray)
    if isinstance(v, tuple):
        return tuple(_device(x) for x in v)
    return v


class DeviceArray(np.ndarray):
    """A NumPy array that behaves like a CuPy array towards NumPy code."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _check(inputs, f"np.{ufunc.__name__}")
        if out is not None:
            _check(out, f"np.{ufunc.__name__}(out=)")
            kwargs["out"] = _host(out)
        return _device(getattr(ufunc, method)(*_host(inputs), **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        _check(args, f"np.{func.__name__}")
        _check(list(kwargs.values()), f"np.{func.__name__}")
        return _device(func(*_host(args), **_host(kwargs)))

    def __getitem__(self, key):
        _check(key if isinstance(key, tuple) else (key,), "indexing")
        return _device(self.view(np.ndarray)[_host(key)])

    def __setitem__(self, key, value):
        _check(key if isinstance(key, tuple) else (key,), "indexing")
        _check((value,), "assignment")
        self.view(np.ndarray)[_host(key)] = _host(value)

    def get(self):
        """A host copy, as cupy.ndarray.get()."""
        return np.array(self.view(np.ndarray))


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1


class _Device:
    def synchronize(self):
        pass


def _make_module():
    fake = types.ModuleType("cupy")
    fake.ndarray = DeviceArray
    fake.cuda = types.SimpleNamespace(runtime=_Runtime, Device=_Device)

    def asarray(a, dtype=None):  # host -> device is allowed, as in CuPy
        return np.array(_host(a), dtype=dtype).view(DeviceArray)

    fake.asarray = fake.array = asarray

    def getattr_(name):
        obj = getattr(np, name)
        if callable(obj) and not isinstance(obj, type):
            def wrapped(*args, **kwargs):
                _check(args, f"cupy.{name}")
                _check(list(kwargs.values()), f"cupy.{name}")
                return _device(obj(*_host(args), **_host(kwargs)))
            return wrapped
        return obj

    fake.__getattr__ = getattr_
    cupyx = types.ModuleType("cupyx")

    def scatter_add(a, indices, values):
        _check((a, indices, values), "cupyx.scatter_add")
        np.add.at(a.view(np.ndarray), _host(indices), _host(values))

    cupyx.scatter_add = scatter_add
    return fake, cupyx


def install(monkeypatch):
    """Installs the stand-in as `cupy` and `cupyx` for the duration of one test."""
    fake, cupyx = _make_module()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    return fake


DeviceArray.__module__ = "cupy"   # what infini.get_array_module looks at
