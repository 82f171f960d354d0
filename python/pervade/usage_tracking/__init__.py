"""Parsl's parsl.usage_tracking: only the levels Config(usage_tracking=) takes (pervade sends nothing)."""
