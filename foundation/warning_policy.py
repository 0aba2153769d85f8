"""What the programs do with Python warnings.

A warning raised inside a third-party module (a dependency deprecating something
another dependency uses, say) is for that library's developers: it is not news
to an admin, and on a one-shot command's stderr it breaks scripts that expect
nothing there. cped, dped and pcloudsh call ``quiet_third_party_warnings`` before
they import anything else, so this holds whatever the environment's -W or
PYTHONWARNINGS says. Warnings of pacemaker-cloud's own modules keep Python's
default handling. Tests do not use this: pytest turns every warning into an
error, with the third-party exceptions named one by one in pyproject.toml.
"""

from __future__ import annotations

import warnings

OWN_MODULES = r"(pcloudsh|cpe|dpe|images|foundation)(\.|$)"


def quiet_third_party_warnings() -> None:
    """Ignore warnings attributed to any module but the project's own."""
    warnings.resetwarnings()
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=OWN_MODULES)
