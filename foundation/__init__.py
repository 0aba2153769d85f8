"""What every part of pacemaker-cloud shares: errors, the deployable document
model, paths and configuration, key files, the store and events.

It imports no other package of the project: pcloudsh, cpe, dpe and images all
build on it (the import-linter contracts in pyproject.toml keep it so).
"""

__version__ = "0.7.0"
