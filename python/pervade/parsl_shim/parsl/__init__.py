"""Not Parsl: the first `import parsl` in a multiprocessing child (spawn or forkserver) of a
process that runs under the parsl → pervade mapping (`pervade run`).

Such a child starts as a fresh interpreter with its parent's sys.path, on which
pervade.parsl_imports.install() put this directory first, but without its parent's import
finder. Here the finder is installed and `parsl` becomes pervade, as in the parent; the
child's later parsl imports go to the finder.
"""

import importlib
import os
import sys

from pervade import parsl_imports

if __name__ != "parsl":  # e.g. a tool walking pervade's packages
    raise ImportError(f"{__name__} is pervade run's stand-in for `parsl` in spawned children, not for import")
del sys.modules[__name__]  # this stand-in; install() refuses while a `parsl` is imported
parsl_imports.install(os.environ.get(parsl_imports.ENV_TESTS) or None)
# The import system returns what sys.modules holds under this name once this file has run.
sys.modules[__name__] = importlib.import_module(__name__)
