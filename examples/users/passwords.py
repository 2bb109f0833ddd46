"""Password hashing with the standard library's scrypt, off the event loop."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets

import attrs


@attrs.frozen
class ScryptCost:
    """scrypt's cost parameters: `n` (a power of two) is the one to lower in tests and benchmarks."""

    n: int = 2**14
    r: int = 8
    p: int = 1

    @property
    def max_memory(self) -> int:
        """The memory bound scrypt needs for these parameters, with room to spare."""
        return 256 * self.n * self.r * self.p


class PasswordHasher:
    """Hashes and checks passwords in a worker thread, so the event loop never blocks on scrypt.

    A hash is ``scrypt$n$r$p$salt$digest`` (salt and digest in base64), so a change of cost keeps old
    hashes checkable.
    """

    def __init__(self, cost: ScryptCost | None = None) -> None:
        self.cost = cost if cost is not None else ScryptCost()

    async def hash(self, password: str) -> str:
        """Return the hash of `password` with a fresh salt."""
        salt = secrets.token_bytes(16)
        cost = self.cost
        digest = await asyncio.to_thread(_scrypt, password, salt, cost)
        encoded_salt = base64.b64encode(salt).decode()
        encoded_digest = base64.b64encode(digest).decode()
        return f"scrypt${cost.n}${cost.r}${cost.p}${encoded_salt}${encoded_digest}"

    async def verify(self, password: str, hashed: str) -> bool:
        """Return True when `password` matches `hashed`."""
        try:
            scheme, n, r, p, salt, digest = hashed.split("$")
        except ValueError:
            return False
        if scheme != "scrypt":
            return False
        cost = ScryptCost(int(n), int(r), int(p))
        computed = await asyncio.to_thread(_scrypt, password, base64.b64decode(salt), cost)
        return hmac.compare_digest(computed, base64.b64decode(digest))

    def __repr__(self) -> str:
        return f"PasswordHasher({self.cost!r})"


def _scrypt(password: str, salt: bytes, cost: ScryptCost) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=cost.n, r=cost.r, p=cost.p, maxmem=cost.max_memory, dklen=32
    )
