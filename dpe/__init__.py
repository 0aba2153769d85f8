"""The deployable policy engine: planner, agents, transport, drivers and dped."""
