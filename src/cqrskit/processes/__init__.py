"""Process managers: long-running processes with typed state, deadlines and compensation.

A process is a plain class whose ``reactions()`` says which messages start it (`starts`), move it on
(`continues`) and end its deadlines (`deadline`), each with the key that names the instance and a
handler that returns a `Step`. A `ProcessManager` built in the container runs it durably;
`stuck_instances` finds instances a deadline did not reach. Needs
SQLAlchemy (extra ``sqlalchemy`` or ``postgres``).
"""

from cqrskit.processes._manager import ProcessHistoryEntry, ProcessInstance, ProcessManager, ProcessStatus
from cqrskit.processes._steps import (
    Deadline,
    ProcessDefinition,
    Reaction,
    ReactionKind,
    Send,
    Step,
    continues,
    deadline,
    starts,
)
from cqrskit.processes._stuck import StuckInstance, stuck_instances
from cqrskit.processes._tables import create_process_tables

__all__ = [
    "Deadline",
    "ProcessDefinition",
    "ProcessHistoryEntry",
    "ProcessInstance",
    "ProcessManager",
    "ProcessStatus",
    "Reaction",
    "ReactionKind",
    "Send",
    "Step",
    "StuckInstance",
    "continues",
    "create_process_tables",
    "deadline",
    "starts",
    "stuck_instances",
]
