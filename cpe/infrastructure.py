"""A deployable's infrastructure settings, checked against the infrastructure before they are stored.

For openstack that means asking the cloud whether it has the flavor, network,
security group and availability zone named (``dpe.drivers.registry``): a
name it does not know is invalid input (HTTP 400, exit 2), so a typo is seen
when it is written, not when an instance is first created.  The check talks
to the cloud, so it runs in a worker thread, bounded, off the store's thread;
a cloud that does not answer refuses the change as unavailable.  Other
infrastructures have nothing to ask.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dpe.drivers.registry import check_with_cloud
from foundation.errors import Unavailable
from foundation.paths import resolve

CHECK_TIMEOUT = 90.0  # a few calls, each bounded by the driver's call timeout
CHECKED = ("openstack",)


async def check_infrastructure(body: Any) -> None:
    """Raise InvalidInput naming each setting the infrastructure does not have."""
    if not isinstance(body, dict) or body.get("infrastructure") not in CHECKED:
        return
    settings = body.get("settings")
    if not isinstance(settings, dict):
        return  # the document's own validation says what is wrong
    text = {str(key): str(value) for key, value in settings.items()}
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await asyncio.to_thread(check_with_cloud, body["infrastructure"], resolve(), text)
    except TimeoutError:
        raise Unavailable(
            f"the {body['infrastructure']} settings could not be checked within "
            f"{CHECK_TIMEOUT:g} s: nothing was changed"
        ) from None
