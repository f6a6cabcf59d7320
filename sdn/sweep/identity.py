"""What makes two sweeps the same sweep, so that a results folder never mixes two.

A sweep's identity is what determines its rows: the function (its name and a
fingerprint of its code and of everything bound to it: defaults, closure values,
`functools.partial` arguments, a `SweepFunction`'s settings, and the module-level
functions and constants it reads), the design's points, the static names, the key,
the float type (`jax_enable_x64`) and the `sdn` version. In place of the function's
fingerprint the user may give a name (`run(..., name=...)`), vouching that the
function is the same.

Everything is described by value (numbers, text, array bytes, compiled code), never by
memory address, so the identity is the same in every process that builds the same
sweep. A value that cannot be described that way (an object whose only description is
its address) is refused with a message that asks for `name=`.

Functions in other modules that `f` calls are identified by their qualified name only;
for `sdn` itself the package version stands in for their code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import types
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any

import jax
import numpy as np

from sdn.sweep.designs import Design
from sdn.sweep.functions import SweepFunction, _Bound

__all__ = ["UnidentifiableFunction", "differences", "digest", "fingerprint", "identify"]


class UnidentifiableFunction(TypeError):
    """A sweep function binds a value with no description that survives the process."""


def identify(
    f: Any, design: Design, *, key_data: list, static: list[str], name: str | None = None
) -> dict[str, Any]:
    """The identity of a sweep as a JSON-able dict (compared field by field on resume)."""
    from sdn import __version__

    if name is not None:
        function = {"name": name, "named_by": "user"}
    else:
        function = {"name": _qualname(f), "named_by": "code", "code": fingerprint(f)}
        if isinstance(f, _Bound):
            function["settings"] = _plain(dict(f.settings))
        elif isinstance(f, functools.partial):
            bound = {f"args[{i}]": a for i, a in enumerate(f.args)} | dict(f.keywords)
            function["settings"] = _plain(bound)
    return {
        "function": function,
        "design": {"spec": design.spec, "n_points": len(design), "points": _points(design)},
        "static": sorted(static),
        "seed": list(key_data),
        "float": jax.numpy.result_type(float).name,  # float64 under jax_enable_x64
        "sdn": __version__,
    }


def digest(identity: Mapping[str, Any]) -> str:
    """A SHA-256 of an identity (or of any JSON-able value), the same in every process."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=_json)
    return hashlib.sha256(text.encode()).hexdigest()


def _json(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between the identity in a folder (`old`) and this sweep's (`new`)."""
    found = []
    fo, fn = old.get("function", {}), new.get("function", {})
    if fo.get("named_by") != fn.get("named_by"):
        how = {"user": "named {!r} with name=", "code": "{!r}, identified by its code"}
        found.append(
            "how the function is identified: "
            f"{how.get(fo.get('named_by'), '{!r}').format(fo.get('name'))} there, "
            f"{how.get(fn.get('named_by'), '{!r}').format(fn.get('name'))} now"
        )
    elif fo.get("name") != fn.get("name"):
        found.append(f"the function: {fo.get('name')!r} there, {fn.get('name')!r} now")
    elif fo.get("settings") != fn.get("settings"):
        so, sn = fo.get("settings") or {}, fn.get("settings") or {}
        changed = [
            f"{k} = {so.get(k, '(unset)')!r} there, {sn.get(k, '(unset)')!r} now"
            for k in sorted(set(so) | set(sn))
            if so.get(k) != sn.get(k)
        ]
        found.append("the settings: " + "; ".join(changed))
    elif fo.get("code") != fn.get("code"):
        found.append(
            f"the code of {fn.get('name')!r} or a value bound to it (fingerprint "
            f"{str(fo.get('code'))[:12]}… there, {str(fn.get('code'))[:12]}… now)"
        )
    do, dn = old.get("design", {}), new.get("design", {})
    if do.get("spec") != dn.get("spec"):
        found.append(f"the design: {_brief(do.get('spec'))} there, {_brief(dn.get('spec'))} now")
    elif do != dn:
        found.append("the design's points (same description, other values)")
    labels = {
        "static": "the static names",
        "seed": "the seed (key data)",
        "float": "the float type (jax_enable_x64)",
    }
    for field, label in labels.items():
        if old.get(field) != new.get(field):
            found.append(f"{label}: {old.get(field)!r} there, {new.get(field)!r} now")
    if old.get("sdn") != new.get("sdn"):
        found.append(
            f"the sdn version: {old.get('sdn')} there, {new.get('sdn')} now (rerun with "
            f"sdn {old.get('sdn')} to finish it)"
        )
    return found


def fingerprint(f: Any) -> str:
    """A SHA-256 of a callable's code and of every value bound to it.

    >>> def f(key, p, scale=2.0):
    ...     return {"y": scale * p["a"]}
    >>> fingerprint(f) == fingerprint(functools.partial(f, scale=2.0))
    False
    >>> fingerprint(functools.partial(f, scale=3.0)) == fingerprint(functools.partial(f, scale=3.0))
    True
    """
    return digest(_Describer().value(f, "f"))


def _qualname(f: Any) -> str:
    if isinstance(f, _Bound):
        return _qualname(f.spec.fn)
    if isinstance(f, functools.partial):
        return _qualname(f.func)
    module = getattr(f, "__module__", None) or type(f).__module__
    qualname = getattr(f, "__qualname__", None) or type(f).__qualname__
    return f"{module}.{qualname}"


def _points(design: Design) -> str:
    """A SHA-256 of the design's values (dtype and bytes, or text for choices)."""
    h = hashlib.sha256()
    for name, values in design.points.items():
        h.update(f"{name}:{values.dtype.str}:".encode())
        if values.dtype == object:
            h.update(json.dumps([repr(v) for v in values.tolist()]).encode())
        else:
            h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()


def _brief(spec: Any, limit: int = 120) -> str:
    text = json.dumps(spec, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(value: Any) -> Any:
    """Settings as JSON values for the manifest and messages: tuples become lists, other
    objects their type and fingerprint (never a repr, which may hold an address)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return f"<{type(value).__name__} {fingerprint(value)[:12]}>"  # an array, a function, ...


class _Describer:
    """Describes a value by its content as JSON, following functions into their code."""

    def __init__(self):
        self.active: set[int] = set()  # objects being described (cycles)

    def value(self, obj: Any, where: str) -> Any:
        if obj is None or isinstance(obj, bool | int | str):
            return obj
        if isinstance(obj, float):
            return {"float": repr(obj)}
        if isinstance(obj, np.generic):
            return {"numpy": obj.dtype.str, "value": self.value(obj.item(), where)}
        if isinstance(obj, np.ndarray | jax.Array):
            return self._array(obj, where)
        if id(obj) in self.active:
            return {"cycle": type(obj).__qualname__}
        self.active.add(id(obj))
        try:
            return self._compound(obj, where)
        finally:
            self.active.discard(id(obj))

    def _array(self, obj: Any, where: str) -> Any:
        if isinstance(obj, jax.Array) and jax.dtypes.issubdtype(obj.dtype, jax.dtypes.prng_key):
            obj = jax.random.key_data(obj)
        a = np.asarray(obj)
        if a.dtype == object:
            items = [self.value(v, f"{where}[{i}]") for i, v in enumerate(a.ravel().tolist())]
            return {"objects": items, "shape": list(a.shape)}
        data = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
        return {"array": a.dtype.str, "shape": list(a.shape), "sha256": data}

    def _compound(self, obj: Any, where: str) -> Any:
        if isinstance(obj, _Bound | SweepFunction):
            spec = obj.spec if isinstance(obj, _Bound) else obj
            settings = obj.settings if isinstance(obj, _Bound) else tuple(spec.settings.items())
            return {
                "sweep_function": self._function(spec.fn, f"{where}.fn"),
                "batched": self.value(spec.batched, f"{where}.batched"),
                "defaults": self.value(dict(spec.defaults), f"{where}.defaults"),
                "choices": self.value(dict(spec.choices), f"{where}.choices"),
                "settings": self.value(settings, f"{where}.settings"),
            }
        if isinstance(obj, functools.partial):  # also jax.tree_util.Partial
            return {
                "partial": self.value(obj.func, f"{where}.func"),
                "args": [self.value(a, f"{where}.args[{i}]") for i, a in enumerate(obj.args)],
                "keywords": self.value(dict(obj.keywords), f"{where}.keywords"),
            }
        if isinstance(obj, types.FunctionType):
            return self._function(obj, where)
        if isinstance(obj, types.MethodType):
            return {
                "method": self.value(obj.__func__, where),
                "self": self.value(obj.__self__, f"{where}.__self__"),
            }
        if isinstance(obj, types.CodeType):
            return self._code(obj)
        if isinstance(obj, types.ModuleType):
            return {"module": obj.__name__}
        if isinstance(obj, type | types.BuiltinFunctionType | types.BuiltinMethodType):
            return {"ref": f"{getattr(obj, '__module__', None)}.{obj.__qualname__}"}
        if isinstance(obj, dict):
            items = [
                [self.value(k, where), self.value(v, f"{where}[{k!r}]")] for k, v in obj.items()
            ]
            return {"dict": sorted(items, key=json.dumps)}
        if isinstance(obj, set | frozenset):
            return {"set": sorted((self.value(v, where) for v in obj), key=json.dumps)}
        if isinstance(obj, list | tuple):
            items = [self.value(v, f"{where}[{i}]") for i, v in enumerate(obj)]
            return {type(obj).__qualname__: items}
        if is_dataclass(obj):
            state = {f.name: getattr(obj, f.name) for f in fields(obj)}
            return {"type": _qualname(type(obj)), "fields": self.value(state, where)}
        if hasattr(obj, "__dict__"):
            return {"type": _qualname(type(obj)), "state": self.value(vars(obj), where)}
        text = repr(obj)
        if " at 0x" in text:
            raise UnidentifiableFunction(
                f"cannot identify the sweep function across processes: {where} is a "
                f"{type(obj).__name__} whose only description is its memory address "
                f"({text[:80]}); pass name='...' to sdn.sweep.run to name the sweep yourself"
            )
        return {"repr": _qualname(type(obj)), "text": text}

    def _function(self, fn: types.FunctionType, where: str) -> Any:
        closure = []
        for cell in fn.__closure__ or ():
            try:
                closure.append(self.value(cell.cell_contents, f"{where} (a closure value)"))
            except ValueError:  # an empty cell
                closure.append({"empty": True})
        globals_ = {}
        for name in sorted(_global_names(fn.__code__)):
            if name in fn.__globals__:
                globals_[name] = self._global(fn.__globals__[name], fn.__module__, where, name)
        return {
            "function": f"{fn.__module__}.{fn.__qualname__}",
            "code": self._code(fn.__code__),
            "defaults": self.value(fn.__defaults__, f"{where} (defaults)"),
            "kwdefaults": self.value(fn.__kwdefaults__, f"{where} (defaults)"),
            "closure": closure,
            "globals": globals_,
        }

    def _global(self, obj: Any, module: str, where: str, name: str) -> Any:
        """A module-level name a function reads: followed into its own module's functions,
        described by value when it is data, by name when it comes from elsewhere."""
        if isinstance(obj, types.ModuleType):
            return {"module": obj.__name__}
        if isinstance(obj, types.FunctionType):
            if obj.__module__ == module:
                return self.value(obj, f"{where} -> {name}")
            return {"ref": f"{obj.__module__}.{obj.__qualname__}"}
        if isinstance(obj, type | types.BuiltinFunctionType):
            return {"ref": _qualname(obj)}
        try:
            return self.value(obj, f"{where} -> global {name}")
        except UnidentifiableFunction:
            return {"type": _qualname(type(obj))}

    def _code(self, code: types.CodeType) -> Any:
        consts = []
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                consts.append(self._code(c))
            elif isinstance(c, frozenset):
                consts.append({"set": sorted(repr(v) for v in c)})
            else:
                consts.append(repr(c))
        return {
            "bytecode": hashlib.sha256(code.co_code).hexdigest(),
            "consts": consts,
            "names": list(code.co_names),
            "args": [code.co_argcount, code.co_kwonlyargcount, code.co_flags],
        }


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names
