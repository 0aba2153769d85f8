"""Status with services: each shows under the assembly it runs on, and in a list."""

from __future__ import annotations

from cpe.status import StatusRecord, compose_status


def test_a_service_shows_where_it_runs_with_its_candidates() -> None:
    document = {
        "name": "shop",
        "assemblies": [{"name": "a1", "resources": []}, {"name": "a2", "resources": []}],
        "services": [
            {
                "name": "db",
                "class": "ocf",
                "provider": "heartbeat",
                "type": "Dummy",
                "locations": [{"assembly": "a1", "score": 100}, {"assembly": "a2", "score": 50}],
            }
        ],
    }
    runtime = {
        "resource": {
            "a1/db": {"state": "stopped", "last_rc": 7, "failures": []},
            "a2/db": {"state": "running", "last_rc": 0, "failures": []},
        }
    }
    record = StatusRecord(document, "started", runtime, None, [])
    status = compose_status(record, {}, now=0.0)
    a1, a2 = status["assemblies"]
    assert a1["resources"] == []
    assert a2["resources"] == [
        {
            "name": "db",
            "agent": "ocf:heartbeat:Dummy",
            "state": "running",
            "failures": [],
            "last_op": None,
            "last_rc": 0,
            "blocked": None,
            "retry_at": None,
            "failures_in_a_row": None,
            "last_failure": None,
            "service": True,
        }
    ]
    assert status["services"] == [
        {
            "name": "db",
            "agent": "ocf:heartbeat:Dummy",
            "locations": document["services"][0]["locations"],  # type: ignore[index]
            "running_on": ["a2"],
        }
    ]
