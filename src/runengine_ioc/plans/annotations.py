"""Kept for plans that import ``runengine_ioc.plans.annotations``; prefer ``runengine_ioc``."""

from runengine_ioc.engine.annotations import Units

__all__ = ["Units"]
