"""The Faust runtime: app, topics, tables, agents, outputs, delivery service, worker start-up.

The Faust repairs Leadstream needs are fenced in :mod:`streams.runtime.faust_repairs`; re-check
them on any Faust upgrade.
"""
