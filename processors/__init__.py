"""Processors and the worker runtime that runs them (see the worker milestone)."""
