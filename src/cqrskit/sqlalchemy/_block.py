"""One transaction or savepoint opened by `Database.transaction` (and by the `Transaction` behaviour).

The block does not know `Database`: the database hands it, when it is made, the context variable that
holds the transaction open in this task and the session factory for the block's isolation level.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction, async_sessionmaker

from cqrskit._errors import ConfigurationError, ConflictError
from cqrskit._logs import library_logger
from cqrskit.behaviours._database_failures import (
    CommitOutcomeUnknownError,
    is_connection_lost,
    is_unique_violation,
)
from cqrskit.scope import TransactionScope, is_deadline
from cqrskit.sqlalchemy._completion import commit_to_completion, to_completion
from cqrskit.sqlalchemy._isolation import stricter_than

__all__ = ["Open", "TransactionBlock", "close_session"]

_CONFLICT = "a record with the same unique key already exists"
_UNKNOWN = "the connection was lost while COMMIT was in flight: the command may or may not have committed"
_logger = library_logger("cqrskit.sqlalchemy")


class Open:
    """What `Database` keeps in its context variable while a transaction is open in a task."""

    __slots__ = ("level", "scope", "session")

    def __init__(self, session: AsyncSession, scope: TransactionScope, level: str | None) -> None:
        self.session = session
        self.scope = scope
        self.level = level


async def close_session(session: AsyncSession) -> None:
    """Close `session` (rolling back what is open); log rather than raise, the outcome is already set."""
    try:
        await session.close()
    except Exception:  # a broken connection is invalidated by SQLAlchemy; nothing to add
        _logger.warning("session_close_failed", exc_info=True)


async def _commit_and_close(session: AsyncSession) -> None:
    try:
        await session.commit()
    except BaseException as exc:
        await close_session(session)
        if isinstance(exc, Exception) and is_connection_lost(exc):
            raise CommitOutcomeUnknownError(_UNKNOWN) from exc
        raise
    await session.close()


async def _rollback_savepoint(savepoint: AsyncSessionTransaction) -> None:
    await savepoint.rollback()


def _conflict_or_none(exc: BaseException | None) -> ConflictError | None:
    if isinstance(exc, Exception) and not isinstance(exc, ConflictError) and is_unique_violation(exc):
        return ConflictError(_CONFLICT)
    return None


class TransactionBlock:
    """``async with database.transaction() as session:``; see `Database.transaction`.

    `rollback_only` set to True before the block ends makes it roll back instead of committing (the
    `Transaction` behaviour does so for a failure Result). `Database.transaction` makes it: `active`
    holds the transaction open in the task, `maker` opens the session of an outermost transaction at
    `level`, which then runs at `effective_level` (SQLite's transactions are all serializable).
    """

    __slots__ = (
        "_active",
        "_effective_level",
        "_entered",
        "_level",
        "_maker",
        "_open",
        "_savepoint",
        "_token",
        "rollback_only",
    )

    def __init__(
        self,
        active: ContextVar[Open | None],
        maker: async_sessionmaker[AsyncSession],
        level: str | None,
        effective_level: str | None,
    ) -> None:
        self._active = active
        self._maker = maker
        self._level = level
        self._effective_level = effective_level
        self._savepoint: AsyncSessionTransaction | None = None
        self.rollback_only = False

    async def __aenter__(self) -> AsyncSession:
        outer = self._active.get()
        if outer is None:
            session = self._maker()
            scope = TransactionScope()
            level = self._effective_level
        else:
            if self._level is not None and stricter_than(self._level, outer.level):
                raise ConfigurationError(
                    f"a nested transaction asks for {self._level} but the transaction it joins runs at "
                    f"{outer.level or 'the database default'}; give the outer command that isolation"
                )
            session = outer.session
            self._savepoint = await session.begin_nested()
            scope = TransactionScope(outer.scope)
            level = outer.level
        self._open = Open(session, scope, level)
        self._token: Token[Open | None] = self._active.set(self._open)
        self._entered: AbstractContextManager[TransactionScope] = scope.entered()
        self._entered.__enter__()
        return session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._entered.__exit__(None, None, None)
        self._active.reset(self._token)
        opened = self._open
        if self._savepoint is not None:
            await self._exit_savepoint(self._savepoint, opened.scope, exc)
            return
        session = opened.session
        if exc is None and not self.rollback_only:
            try:
                await session.flush()
            except Exception as flush_error:
                opened.scope.discard()
                await to_completion(close_session(session))
                conflict = _conflict_or_none(flush_error)
                if conflict is not None:
                    raise conflict from flush_error
                raise
            try:
                interrupted = await commit_to_completion(_commit_and_close(session))
            except BaseException as commit_error:
                opened.scope.discard()
                conflict = _conflict_or_none(commit_error)
                if conflict is not None:
                    raise conflict from commit_error
                raise
            # Committed: the command's outcome is the commit's, and its after-commit work runs to its
            # end. A Timeout deadline that expires during the COMMIT or that work is answered by the
            # commit's outcome; any other cancellation goes on once the work is done.
            late = await commit_to_completion(opened.scope.run_after_commit(_logger))
            if interrupted is None or is_deadline(interrupted):
                interrupted = late
            if interrupted is None or is_deadline(interrupted):
                return
            raise interrupted
        opened.scope.discard()
        await to_completion(close_session(session))
        conflict = _conflict_or_none(exc)
        if conflict is not None:
            raise conflict from exc

    async def _exit_savepoint(
        self, savepoint: AsyncSessionTransaction, scope: TransactionScope, exc: BaseException | None
    ) -> None:
        if exc is None and not self.rollback_only:
            try:
                await savepoint.commit()
            except BaseException as release_error:
                scope.discard()
                await _rollback_savepoint(savepoint)
                conflict = _conflict_or_none(release_error)
                if conflict is not None:
                    raise conflict from release_error
                raise
            scope.release()
            return
        scope.discard()
        await _rollback_savepoint(savepoint)
        conflict = _conflict_or_none(exc)
        if conflict is not None:
            raise conflict from exc

    def __repr__(self) -> str:
        return f"TransactionBlock(isolation={self._level!r})"
