"""Ready-made configs with Parsl's module names: each module defines `config`.

    from pervade.configs.local_threads import config     # or htex_local
    pervade.load(config)
"""
