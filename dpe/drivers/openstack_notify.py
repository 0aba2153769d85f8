"""Nova's versioned notifications, consumed from the cloud's RabbitMQ (pika).

nova publishes them with oslo.messaging on a topic exchange (``nova``) with
routing keys ``versioned_notifications.info`` and ``.error``.  The listener
binds a queue of its own (exclusive, removed when it disconnects) to both, so
it takes copies without disturbing any other consumer, and turns the events
that end a server into instance states: ``instance.delete.start`` (or a
``DELETED`` update) is ``GONE``; ``instance.power_off``, ``instance.shutdown``
and an update to ``error`` are ``STOPPED``.  It runs pika's blocking
connection in a daemon thread of its own (AMQP heartbeats every 10 s, so a
broker that vanished is noticed) and reconnects with back-off; each event is
handed to the driver in its asyncio loop.

Where the broker is comes from a JSON file the operator names in
``settings.notifications`` (``{"url": "rabbit://user:password@host:5672/",
"exchange": "nova", "topic": "versioned_notifications"}``, the form of the test
rig's ``rabbitmq.json``): the credentials stay in that file, never in the
store, logs or events (messages name the host only).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pika.exceptions

from dpe.interfaces import InstanceState
from foundation.errors import InvalidInput

log = logging.getLogger(__name__)
logging.getLogger("pika").setLevel(logging.WARNING)

Deliver = Callable[[str, InstanceState, str], None]  # server id, state, event type
Notice = Callable[[str], None]

RECONNECT_INITIAL = 1.0
RECONNECT_MAX = 30.0
AMQP_HEARTBEAT = 10
CONNECT_TIMEOUT = 10.0
_GONE_EVENTS = ("instance.delete.start", "instance.delete.end", "instance.soft_delete.start")
_STOPPED_EVENTS = (
    "instance.power_off.start",
    "instance.power_off.end",
    "instance.shutdown.start",
    "instance.shutdown.end",
    "instance.shelve.start",
    "instance.suspend.start",
)
_STATE_OF_UPDATE = {
    "deleted": InstanceState.GONE,
    "soft-delete": InstanceState.GONE,
    "error": InstanceState.STOPPED,
    "stopped": InstanceState.STOPPED,
}


@dataclass(frozen=True)
class Broker:
    url: str  # with credentials: never printed
    host: str  # what messages name
    exchange: str = "nova"
    topic: str = "versioned_notifications"

    @classmethod
    def from_file(cls, path: Path) -> Broker:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise InvalidInput(f"settings.notifications: cannot read {path}: {error}") from None
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str) or "://" not in url:
            raise InvalidInput(f"settings.notifications: {path} has no broker url")
        url = amqp_url(url)
        return cls(
            url=url,
            host=urllib.parse.urlsplit(url).hostname or "?",
            exchange=str(data.get("exchange") or "nova"),
            topic=str(data.get("topic") or "versioned_notifications"),
        )


def amqp_url(url: str) -> str:
    """oslo.messaging's ``rabbit://`` URL (first host of a list) as an AMQP URL for pika."""
    scheme, rest = url.split("://", 1)
    netloc, _, path = rest.partition("/")
    first = netloc.split(",")[0]
    query = urllib.parse.urlencode({"heartbeat": AMQP_HEARTBEAT, "connection_attempts": 1})
    scheme = "amqps" if scheme.endswith("s") and scheme != "rabbit" else "amqp"
    return f"{scheme}://{first}/{urllib.parse.quote(path, safe='')}?{query}"


def server_event(body: bytes) -> tuple[str, InstanceState, str] | None:
    """(server id, state, event type) of a notification that ends a server, else None."""
    try:
        envelope = json.loads(body)
        message = json.loads(envelope["oslo.message"]) if "oslo.message" in envelope else envelope
        event_type = str(message.get("event_type", ""))
        data = message["payload"]["nova_object.data"]
        server_id = str(data["uuid"])
    except (ValueError, KeyError, TypeError):
        return None
    if event_type in _GONE_EVENTS:
        return server_id, InstanceState.GONE, event_type
    if event_type in _STOPPED_EVENTS:
        return server_id, InstanceState.STOPPED, event_type
    if event_type == "instance.update":
        state = _STATE_OF_UPDATE.get(str(data.get("state", "")))
        return (server_id, state, event_type) if state else None
    return None


class NotificationListener:
    """Consumes the notifications in a thread until ``stop``."""

    def __init__(self, broker: Broker, deliver: Deliver, notice: Notice) -> None:
        self.broker = broker
        self.deliver = deliver
        self.notice = notice
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nova-notifications", daemon=True)
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        delay = RECONNECT_INITIAL
        down_noted = False
        while not self._stopping.is_set():
            try:
                self._consume()
                delay = RECONNECT_INITIAL
            except (pika.exceptions.AMQPError, OSError) as error:
                self.connected.clear()
                if not down_noted:
                    self.notice(
                        f"nova's notifications on {self.broker.host} are not received "
                        f"({type(error).__name__}): the servers list is read instead"
                    )
                    down_noted = True
                self._stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            down_noted = False

    def _consume(self) -> None:
        parameters = pika.URLParameters(self.broker.url)
        parameters.socket_timeout = CONNECT_TIMEOUT
        parameters.blocked_connection_timeout = CONNECT_TIMEOUT
        connection = pika.BlockingConnection(parameters)
        try:
            channel = connection.channel()
            queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            channel.exchange_declare(self.broker.exchange, exchange_type="topic", passive=True)
            for priority in ("info", "error"):
                key = f"{self.broker.topic}.{priority}"
                channel.queue_bind(queue, self.broker.exchange, routing_key=key)
            channel.basic_consume(queue, self._on_message, auto_ack=True)
            self.connected.set()
            log.info("consuming nova's notifications on %s", self.broker.host)
            started = time.monotonic()
            while not self._stopping.is_set():
                connection.process_data_events(time_limit=1.0)
            log.debug("notifications consumed for %.0f s", time.monotonic() - started)
        finally:
            self.connected.clear()
            if connection.is_open:
                connection.close()

    def _on_message(self, _channel: Any, _method: Any, _properties: Any, body: bytes) -> None:
        event = server_event(body)
        if event is not None:
            self.deliver(*event)
