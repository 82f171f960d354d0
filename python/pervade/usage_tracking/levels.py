"""The values of Config(usage_tracking=), with Parsl's names. pervade reports no usage at any level."""

DISABLED = 0
LEVEL_1 = 1
LEVEL_2 = 2
LEVEL_3 = 3
