"""Recipes, CLI, evaluation and export built on multispike.convert and multispike.distill."""

from .serialize import load, save

__all__ = ["load", "save"]
