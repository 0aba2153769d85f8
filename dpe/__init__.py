"""The deployable policy engine: model, planner, agents, transport, drivers and dped."""

__version__ = "0.7.0"
