"""One transaction or savepoint opened by `Database.transaction` (and by the `Transaction` behaviour).

The block does not know `Database`: the database hands it, when it is made, the context variable that
holds the transaction open in this task and the session factory for the block's isolation level.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

from cqrskit._errors import (
    DETAIL,
    ConfigurationError,
    ConflictError,
    DomainError,
    UnavailableError,
    ValidationFailedError,
)
from cqrskit._loggable import database_error_summary
from cqrskit._logs import library_logger
from cqrskit.behaviours._database_failures import (
    CommitOutcomeUnknownError,
    causes,
    is_connection_lost,
    is_data_error,
    is_unique_violation,
    is_unreachable,
)
from cqrskit.scope import TransactionScope, is_deadline
from cqrskit.sqlalchemy._completion import commit_to_completion, to_completion
from cqrskit.sqlalchemy._isolation import stricter_than

__all__ = ["Open", "TransactionBlock", "close_session", "domain_error_for"]

_CONFLICT = "a record with the same unique key already exists"
_REFUSED = "a value could not be stored: a number out of range, a text too long, or characters it cannot hold"
_UNAVAILABLE = "the database is unavailable; try again later"
_SQLITE_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)
_UNKNOWN = "the connection was lost while COMMIT was in flight: the command may or may not have committed"
_logger = library_logger("cqrskit.sqlalchemy")


class Open:
    """What `Database` keeps in its context variable while a transaction is open in a task."""

    __slots__ = ("level", "scope", "session", "tenant")

    def __init__(
        self, session: AsyncSession, scope: TransactionScope, level: str | None, tenant: str | None = None
    ) -> None:
        self.session = session
        self.scope = scope
        self.level = level
        self.tenant = tenant


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
            # The caller gets UNAVAILABLE with the operation id; the log says why, without the text.
            _logger.error("commit_outcome_unknown", **_summary(exc))  # noqa: TRY400 - no traceback: its text can quote row values
            raise CommitOutcomeUnknownError(_UNKNOWN) from exc
        raise
    await session.close()


async def _begin(session: AsyncSession) -> None:
    """Begin `session`'s transaction now; on failure close it and raise what the failure means."""
    try:
        await session.connection()
    except BaseException as exc:
        await to_completion(close_session(session))
        translated = domain_error_for(exc)
        if translated is not None:
            raise translated from exc
        raise


async def _rollback_savepoint(savepoint: AsyncSessionTransaction) -> None:
    await savepoint.rollback()


def _sqlite_busy(exc: BaseException) -> bool:
    return any(
        isinstance(code := getattr(each, "sqlite_errorcode", None), int) and code & 0xFF in _SQLITE_BUSY_CODES
        for each in causes(exc)
    )


def domain_error_for(exc: BaseException | None) -> DomainError | None:
    """Return the `DomainError` a database failure means for the caller, or None to let `exc` go on.

    A unique violation is `ConflictError`; a value the database refused (`is_data_error`) is
    `ValidationFailedError` with a fixed text and no field (the database does not say which field in
    a form fit to show); a database that cannot be reached, a dropped connection, or SQLite's write
    lock still held by another connection after the busy timeout is `UnavailableError`. What the
    caller sees carries no text of the database's. A `DomainError` (`CommitOutcomeUnknownError`
    included) stays as it is.
    """
    if not isinstance(exc, Exception) or isinstance(exc, DomainError):
        return None
    if is_unique_violation(exc):
        return ConflictError(_CONFLICT)
    if is_data_error(exc):
        _logger.warning("database_refused_value", **_summary(exc))
        return ValidationFailedError({DETAIL: _REFUSED})
    if is_unreachable(exc) or _sqlite_busy(exc):
        _logger.warning("database_unavailable", **_summary(exc))
        return UnavailableError(_UNAVAILABLE)
    return None


def _summary(exc: BaseException) -> dict[str, object]:
    return {"error_type": type(exc).__qualname__, "database_error": database_error_summary(exc) or {}}


class TransactionBlock:
    """``async with database.transaction() as session:``; see `Database.transaction`.

    `rollback_only` set to True before the block ends makes it roll back instead of committing (the
    `Transaction` behaviour does so for a failure Result). `Database.transaction` makes it: `active`
    holds the transaction open in the task, `maker` opens the session of an outermost transaction at
    `level`, which then runs at `effective_level` (SQLite's transactions are all serializable).
    With `set_tenant` (a database that keeps tenants in schemas of their own) the outermost block
    begins its transaction on entry, so a tenant that has no schema fails before any work. `tenant`
    is the tenant the block is for. A nested block for another tenant is refused inside a tenant's
    transaction; inside one that has no tenant (a consumer's batch) its savepoint runs with
    ``set_tenant(session, tenant)`` applied, and ``set_tenant(session, None)`` puts the host's back
    when the savepoint ends.
    """

    __slots__ = (
        "_active",
        "_effective_level",
        "_entered",
        "_level",
        "_maker",
        "_open",
        "_savepoint",
        "_set_tenant",
        "_switched",
        "_tenant",
        "_token",
        "rollback_only",
    )

    def __init__(
        self,
        active: ContextVar[Open | None],
        maker: Callable[[], AsyncSession],
        level: str | None,
        effective_level: str | None,
        *,
        tenant: str | None = None,
        set_tenant: Callable[[AsyncSession, str | None], Awaitable[None]] | None = None,
    ) -> None:
        self._active = active
        self._maker = maker
        self._level = level
        self._effective_level = effective_level
        self._tenant = tenant
        self._set_tenant = set_tenant
        self._switched = False
        self._savepoint: AsyncSessionTransaction | None = None
        self.rollback_only = False

    async def __aenter__(self) -> AsyncSession:
        outer = self._active.get()
        tenant = self._tenant
        if outer is None:
            session = self._maker()
            if self._set_tenant is not None:
                await _begin(session)
            scope = TransactionScope()
            level = self._effective_level
        else:
            switch = tenant is not None and tenant != outer.tenant
            if switch and (outer.tenant is not None or self._set_tenant is None):
                raise ConfigurationError(
                    f"a nested transaction for tenant {tenant!r} cannot join the transaction of tenant "
                    f"{outer.tenant!r}: dispatch it with the outer context's child()"
                )
            if self._level is not None and stricter_than(self._level, outer.level):
                raise ConfigurationError(
                    f"a nested transaction asks for {self._level} but the transaction it joins runs at "
                    f"{outer.level or 'the database default'}; give the outer command that isolation"
                )
            session = outer.session
            self._savepoint = await session.begin_nested()
            if switch and self._set_tenant is not None:
                await self._enter_tenant(session, self._savepoint, tenant)
            else:
                tenant = outer.tenant
            scope = TransactionScope(outer.scope)
            level = outer.level
        self._open = Open(session, scope, level, tenant)
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
            try:
                await self._exit_savepoint(self._savepoint, opened.scope, exc)
            finally:
                await self._leave_tenant(opened.session)
            return
        session = opened.session
        if exc is None and not self.rollback_only:
            try:
                await session.flush()
            except Exception as flush_error:
                opened.scope.discard()
                await to_completion(close_session(session))
                translated = domain_error_for(flush_error)
                if translated is not None:
                    raise translated from flush_error
                raise
            try:
                interrupted = await commit_to_completion(_commit_and_close(session))
            except BaseException as commit_error:
                opened.scope.discard()
                translated = domain_error_for(commit_error)
                if translated is not None:
                    raise translated from commit_error
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
        translated = domain_error_for(exc)
        if translated is not None:
            raise translated from exc

    async def _enter_tenant(
        self, session: AsyncSession, savepoint: AsyncSessionTransaction, tenant: str | None
    ) -> None:
        """Run this savepoint in `tenant`'s schema (undone with the savepoint, or by `_leave_tenant`)."""
        assert self._set_tenant is not None  # noqa: S101 - the caller checked
        try:
            await self._set_tenant(session, tenant)
        except BaseException as exc:
            await _rollback_savepoint(savepoint)
            translated = domain_error_for(exc)
            if translated is not None:
                raise translated from exc
            raise
        self._switched = True

    async def _leave_tenant(self, session: AsyncSession) -> None:
        """Put back the host transaction's path after a savepoint that ran for a tenant."""
        if self._switched and self._set_tenant is not None:
            self._switched = False
            await self._set_tenant(session, None)

    async def _exit_savepoint(
        self, savepoint: AsyncSessionTransaction, scope: TransactionScope, exc: BaseException | None
    ) -> None:
        if exc is None and not self.rollback_only:
            try:
                await savepoint.commit()
            except BaseException as release_error:
                scope.discard()
                await _rollback_savepoint(savepoint)
                translated = domain_error_for(release_error)
                if translated is not None:
                    raise translated from release_error
                raise
            scope.release()
            return
        scope.discard()
        await _rollback_savepoint(savepoint)
        translated = domain_error_for(exc)
        if translated is not None:
            raise translated from exc

    def __repr__(self) -> str:
        return f"TransactionBlock(isolation={self._level!r})"
