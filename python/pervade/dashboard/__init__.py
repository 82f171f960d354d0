"""Views of a monitoring database (Parsl's schema): `pervade dashboard` (web), `pervade status`
and `pervade top` (terminal). See docs/dashboard.md."""

from . import server, terminal

COMMANDS = {"dashboard": server.main, "status": terminal.status_main, "top": terminal.top_main}
