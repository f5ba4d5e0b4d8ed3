"""Handlers as plain functions: each takes a session and what arrived, and stages what follows.

The workers call these inside one transaction per batch; they never publish themselves (the
outbox relay does), so a handler's effect and the events it causes commit together.
"""
