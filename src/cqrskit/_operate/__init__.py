"""The processes behind ``python -m cqrskit relay|consume|worker``: run, probe, observe, clean up, stop.

`serve` takes the relays and consumers a dependency-injector container provides (by provider name),
starts the consumers first (their queues must exist before anything is published to them), then the
relays; it says it is ready (a log line, a file, ``/readyz`` on an optional HTTP port), purges old
outbox, inbox and idempotency rows on a schedule, and on SIGTERM or SIGINT stops taking messages,
lets those in hand finish and be acknowledged, closes what it opened (the transports, the databases,
every other singleton it built that can be closed, such as a Redis cache, and the container's
resources) and returns 0. A relay or consumer that ends on its own (a fatal error) makes it stop the
rest and return 1.

One concept a module: `ProcessOptions` (`_options`), logging (`_logging`), providers by name
(`_providers`), readiness probes (`_probes`), housekeeping (`_housekeeping`), closing (`_closing`),
`serve` itself (`_serve`), and the ``dead-letters`` and ``processes stuck`` commands.
"""

from cqrskit._operate._dead_letters import dead_letter_json, dead_letters_command
from cqrskit._operate._logging import configure_logging
from cqrskit._operate._options import Cleanup, ProcessOptions
from cqrskit._operate._serve import serve
from cqrskit._operate._stuck import stuck_processes_command

__all__ = [
    "Cleanup",
    "ProcessOptions",
    "configure_logging",
    "dead_letter_json",
    "dead_letters_command",
    "serve",
    "stuck_processes_command",
]
