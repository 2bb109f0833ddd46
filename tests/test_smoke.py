import attrs

from cqrskit import Command, CommandBus, OperationStatus


@attrs.frozen
class Ping(Command[str]):
    text: str


class PingHandler:
    async def handle(self, command: Ping, context: object) -> str:
        return command.text


async def test_a_command_reaches_its_handler() -> None:
    """The smallest dispatch returns the handler's value in a SUCCESS result."""
    result = await CommandBus({Ping: PingHandler()}).execute(Ping("pong"))
    assert result.status is OperationStatus.SUCCESS
    assert result.data == "pong"
    assert result.operation_id
