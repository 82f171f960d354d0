"""Log configurations for Config(initialize_logging=...) (Parsl's parsl.logconfigs): a
LogConfig decides how a run's logging is set up. FileLogging (file.py), JSONLogging (json.py)
and NoopLogging (noop.py) are pervade's; users may subclass LogConfig (base.py)."""

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from .._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
