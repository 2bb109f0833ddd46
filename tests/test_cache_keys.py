"""Unit tests of cqrskit.caching._keys: cache keys, tag keys and the result type read from a query."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Generic, TypeVar

import attrs
import pytest

from cqrskit import ConfigurationError, Page, Query
from cqrskit.caching import CachePolicy, QueryCache
from cqrskit.caching._keys import dependency_tag_keys, entity_tag_keys, query_result_type
from cqrskit.testing import InMemoryCache
from tests.caching_app import SEARCH, GetUser, SearchUsers, UserDto, search_key

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


class TestKeys:
    """Keys are equal for equal queries and stable across processes and runs."""

    def test_equal_queries_give_equal_keys(self) -> None:
        """Sets and dicts built in another order give the same key."""
        other = SearchUsers(
            frozenset(["viewer", "owner", "editor", "admin"]),
            {"team": "core", "active": "yes", "zone": "eu"},
            SEARCH.since,
        )
        assert search_key(other) == search_key(SEARCH)

    def test_different_queries_give_different_keys(self) -> None:
        """Changing any field changes the key."""
        assert search_key(attrs.evolve(SEARCH, roles=frozenset({"admin"}))) != search_key(SEARCH)
        assert search_key(attrs.evolve(SEARCH, since=None)) != search_key(SEARCH)

    def test_the_key_names_the_type_and_version(self) -> None:
        """A key starts with the module-qualified type name and the policy version."""
        assert search_key(SEARCH).startswith("tests.caching_app.SearchUsers:v1:")

    def test_long_renderings_are_digested(self) -> None:
        """A rendering longer than 64 characters becomes a 32-digit blake2b digest."""
        key = search_key(SEARCH)
        assert key.split(":v1:")[1].startswith("#")
        assert len(key.split("#")[1]) == 32
        short = QueryCache(InMemoryCache(), {GetUser: CachePolicy(ttl=1)}).key_for(GetUser("42"))
        assert short == 'tests.caching_app.GetUser:v1:{"trace":"","user_id":"42"}'

    def test_stable_across_processes_with_other_hash_seeds(self) -> None:
        """Two other interpreters, with other hash seeds, compute the same key as this one."""
        script = "from tests.caching_app import SEARCH, search_key\nprint(search_key(SEARCH))\n"
        keys = set()
        for seed in ("1", "2"):
            env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "PYTHONHASHSEED": seed}
            completed = subprocess.run(  # noqa: S603 - our own interpreter and script
                [sys.executable, "-c", script],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            keys.add(completed.stdout.strip())
        assert keys == {search_key(SEARCH)}

    def test_tag_keys(self) -> None:
        """An entity change bumps its own and its kind's wildcard key; ("kind", "*") also the kind's epoch."""
        assert entity_tag_keys("user", "42") == ("tag:user:42", "tag:user:*")
        assert entity_tag_keys("user", "*") == ("tag:user:*", "tag:user")
        assert dependency_tag_keys([("user", 42), ("user", "*"), ("team", "7"), ("user", "42")]) == [
            "tag:user:42",
            "tag:user",
            "tag:user:*",
            "tag:team:7",
            "tag:team",
        ]


@attrs.frozen
class Paged(Query[Page[T]], Generic[T]):
    page: int = 1


@attrs.frozen
class ListUserPages(Paged[UserDto]):
    pass


@attrs.frozen
class GetUserByName(Query["UserDto"]):
    name: str


@attrs.frozen
class GetUserAgain(GetUser):
    pass


class TestResultTypes:
    """The result type R is read from the query's generic bases, once."""

    def test_a_direct_type_argument(self) -> None:
        """Query[UserDto] gives UserDto."""
        assert query_result_type(GetUser) is UserDto

    def test_through_a_generic_intermediate_base(self) -> None:
        """Paged[UserDto], itself a Query[Page[T]], gives Page[UserDto]."""
        assert query_result_type(ListUserPages) == Page[UserDto]

    def test_a_string_type_argument(self) -> None:
        """Query["UserDto"] is resolved in the query's module."""
        assert query_result_type(GetUserByName) is UserDto

    def test_a_plain_subclass(self) -> None:
        """A subclass of a typed query returns what its parent returns."""
        assert query_result_type(GetUserAgain) is UserDto

    def test_an_unresolved_type_variable_is_refused(self) -> None:
        """The generic intermediate itself, Paged[T], has no concrete result type."""
        with pytest.raises(ConfigurationError, match="concrete type argument"):
            query_result_type(Paged)
