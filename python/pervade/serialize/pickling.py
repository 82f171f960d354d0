"""How pervade pickles a value (a task's result, an exception, what `serialize()` writes): plain
pickle, or cloudpickle for what plain pickle cannot do or would name in `__main__` (see the
package's doc)."""

import pickle

import cloudpickle

PROTOCOL = 5
_MAIN = b"__main__"
# Values whose pickle cannot name `__main__`: no need to scan it for that name.
_FLAT_TYPES = frozenset((bytes, bytearray, str, int, float, bool, complex, type(None)))


def dumps(obj) -> bytes:
    """Plain pickle, or cloudpickle when plain pickle fails or refers to `__main__`."""
    try:
        data = pickle.dumps(obj, protocol=PROTOCOL)
    except Exception:  # noqa: BLE001 - lambdas, local classes...: cloudpickle's job
        return cloudpickle.dumps(obj, protocol=PROTOCOL)
    if type(obj) not in _FLAT_TYPES and _MAIN in data:
        return cloudpickle.dumps(obj, protocol=PROTOCOL)
    return data
