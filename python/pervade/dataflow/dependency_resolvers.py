"""Config(dependency_resolver=...): how an app call's arguments are searched for futures.

A resolver is two functions: traverse_to_gather(arg) -> the futures inside arg the task must
wait for, and traverse_to_unwrap(arg) -> arg with those futures replaced by their results
(called once they are done). Both are applied to each positional argument, each keyword
argument and each item of inputs=, as in Parsl.

SHALLOW_DEPENDENCY_RESOLVER (Parsl's default) sees only futures that are those arguments
themselves; DEEP_DEPENDENCY_RESOLVER also looks inside lists, tuples, sets and dicts (keys and
values), at any depth. Both are functools.singledispatch functions, so more types can be
registered:

>>> @DEEP_DEPENDENCY_RESOLVER.traverse_to_gather.register(MyBox)
... def _(box): return deep_traverse_to_gather(box.content)
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from functools import singledispatch
from typing import Callable, Sequence


@dataclass
class DependencyResolver:
    traverse_to_gather: Callable[[object], Sequence[Future]]
    traverse_to_unwrap: Callable[[object], object]


def _result_of_done(fut: Future):
    assert fut.done(), "a dependency is unwrapped only once it is done"
    return fut.result()


@singledispatch
def shallow_traverse_to_gather(o):
    return []  # an ordinary value hides no future the kernel could see


@shallow_traverse_to_gather.register(Future)
def _(fut):
    return [fut]


@singledispatch
def shallow_traverse_to_unwrap(o):
    return o


shallow_traverse_to_unwrap.register(Future, _result_of_done)


@singledispatch
def deep_traverse_to_gather(o):
    return []


@deep_traverse_to_gather.register(Future)
def _(fut):
    return [fut]


@deep_traverse_to_gather.register(tuple)
@deep_traverse_to_gather.register(list)
@deep_traverse_to_gather.register(set)
def _(items):
    return [f for item in items for f in deep_traverse_to_gather(item)]


@deep_traverse_to_gather.register(dict)
def _(mapping):
    return [f for k, v in mapping.items() for f in (*deep_traverse_to_gather(k), *deep_traverse_to_gather(v))]


@singledispatch
def deep_traverse_to_unwrap(o):
    return o


deep_traverse_to_unwrap.register(Future, _result_of_done)


@deep_traverse_to_unwrap.register(tuple)
@deep_traverse_to_unwrap.register(list)
@deep_traverse_to_unwrap.register(set)
def _(items):
    return type(items)(map(deep_traverse_to_unwrap, items))


@deep_traverse_to_unwrap.register(dict)
def _(mapping):
    return {deep_traverse_to_unwrap(k): deep_traverse_to_unwrap(v) for k, v in mapping.items()}


SHALLOW_DEPENDENCY_RESOLVER = DependencyResolver(traverse_to_gather=shallow_traverse_to_gather,
                                                 traverse_to_unwrap=shallow_traverse_to_unwrap)
DEEP_DEPENDENCY_RESOLVER = DependencyResolver(traverse_to_gather=deep_traverse_to_gather,
                                              traverse_to_unwrap=deep_traverse_to_unwrap)

__all__ = ["DependencyResolver", "SHALLOW_DEPENDENCY_RESOLVER", "DEEP_DEPENDENCY_RESOLVER",
           "shallow_traverse_to_gather", "shallow_traverse_to_unwrap", "deep_traverse_to_gather",
           "deep_traverse_to_unwrap"]
