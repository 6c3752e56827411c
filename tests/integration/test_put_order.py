"""A put's completion follows every monitor the put caused, as in EPICS base.

Before ca/fanout.py, caproto sent a write's reply straight to the socket while the monitors
the write had posted waited in its batching queue: a pyepics client reading its subscription
right after ``caput(wait=True)`` saw the old value in 15-19 tries of 20 (softIoc: never).
"""

from __future__ import annotations

import json

from .pyepics_put_order import put_order

TRIES = 25


def test_each_put_s_monitor_arrives_before_its_completion(ioc):
    ioc.ca.put_ok("PlanName", "count")
    spec = {
        "puts": [
            {
                "pv": ioc.ca.pv("PlanArgs"),
                "values": [
                    json.dumps({"detectors": ["det"], "num": i}) for i in range(1, TRIES + 1)
                ],
            },
            {"pv": ioc.ca.pv("Metadata"), "values": [json.dumps({"n": i}) for i in range(TRIES)]},
            {"pv": ioc.ca.pv("PlanName"), "values": ["scan", "count"] * (TRIES // 2 + 1)},
            {"pv": ioc.ca.pv("count:num"), "values": [str(i) for i in range(1, TRIES + 1)]},
        ]
    }
    stale = put_order(ioc.env, spec)
    assert stale == {item["pv"]: [] for item in spec["puts"]}


def test_start_s_completion_follows_the_end_of_the_plan_s_monitors(ioc):
    ioc.ca.configure("count", {"detectors": ["det"], "num": 2})
    watched = ("ExitStatus", "State", "Start", "ScanId", "RunUid")
    spec = {
        "start": {
            "pv": ioc.ca.pv("Start"),
            "tries": 20,
            "watch": {name: ioc.ca.pv(name) for name in watched},
        }
    }
    assert put_order(ioc.env, spec) == {"start": []}
