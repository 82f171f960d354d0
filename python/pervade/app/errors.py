"""Parsl's parsl.app.errors: the exceptions apps raise (defined in pervade.errors)."""

from ..errors import (AppBadFormatting, AppException, AppTimeout, BadStdStreamFile, BashAppNoReturn, BashExitFailure,
                      MissingOutputs, ParslError)

__all__ = ["AppBadFormatting", "AppException", "AppTimeout", "BadStdStreamFile", "BashAppNoReturn", "BashExitFailure",
           "MissingOutputs", "ParslError"]
