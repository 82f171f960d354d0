"""Parsl's parsl.data_provider: File (files.py) and the staging providers (docs/staging.md):
staging (the Staging base class), data_manager (default_staging), file_noop, http, ftp, zip,
rsync, globus."""
