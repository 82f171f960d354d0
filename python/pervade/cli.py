"""The `pervade` command: `pervade perf ...` (see pervade.perf); `pervade dashboard|status|top ...`
(see pervade.dashboard)."""

from __future__ import annotations

import sys

USAGE = ("usage: pervade perf [options] | dashboard [RUN_DIR|monitoring.db] | status RUN_DIR | top RUN_DIR\n"
         "       (pervade COMMAND --help for the options)")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "perf":
        from . import perf
        return perf.main(argv[1:])
    if argv[0] in ("dashboard", "status", "top"):
        from . import dashboard
        return dashboard.COMMANDS[argv[0]](argv[1:])
    print(f"pervade: unknown command {argv[0]!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
