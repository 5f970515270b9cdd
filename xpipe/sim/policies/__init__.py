"""Every sharing policy, one module each; importing this package registers them all.

A new policy is one module here that calls ``xpipe.sim.policy.register``: the
run-id grammar, the sweep's config keys, the summary's columns and the
figures' labels, colours and order all come from that declaration.
"""
# code-inputs: whole-package

import importlib
import pkgutil

from xpipe.sim.policy import REGISTRY, Param, PolicyInfo

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["REGISTRY", "Param", "PolicyInfo"]
