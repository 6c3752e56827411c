"""Submit: a plan, its arguments and metadata in one put, validated and run as one unit.

PlanName, PlanArgs and Metadata are three PVs that any client can change between another
client's puts, so a script that sets them and then puts Start may run someone else's plan.
A Submit put carries all three at once (JSON ``{"plan": ..., "args": {...}, "metadata":
{...}}``), so what runs is exactly what was submitted. Put-callback semantics are Start's:
``caput -c -S Submit '{...}'`` completes when the plan has ended; a refusal fails the put and
says why in Status, and nothing runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from caproto import SkipWrite

from ..engine.json_text import parse_plan_request
from ..engine.metadata import validate_metadata
from .common import as_text, clear_put_alarm, long_string, refusals_to_status
from .context import IOCGroup


def parse_submission(text: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The plan name, arguments and metadata of a Submit put; ArgumentError if malformed."""
    plan, arguments, metadata, _ = parse_plan_request(text, "Submit")
    return plan, arguments, metadata


class SubmitGroup(IOCGroup):
    """The Submit PV: atomic submission, the way scripts should run plans."""

    submit = long_string("Submit", "Run a plan given as JSON (atomic)", value="")

    @submit.putter  # type: ignore[no-redef]
    @refusals_to_status("Submit")
    async def submit(self, instance: Any, value: Any) -> None:
        text = as_text(value)
        plan, arguments, metadata = parse_submission(text)
        self.context.registry.check_plan_name(plan)
        await self.context.registry.validate(plan, arguments)
        validate_metadata(metadata, self.context.registry.metadata_keys)
        if self.context.queue is not None:  # refused while the queue runs
            self.context.queue.check_direct_run()
        finished = await self.context.commands.submit(plan, arguments, metadata)
        await clear_put_alarm(instance)
        # what is running is readable while it runs; the put completes when the plan has ended
        await instance.write(text, verify_value=False)
        await self.context.status.say(f"submitted: {plan}")
        await asyncio.shield(finished)
        raise SkipWrite()
