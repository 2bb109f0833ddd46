"""Draw docs/_static/grafana-cqrskit.png: the Grafana dashboard's panels, from real scraped metrics.

``nox -s dashboard`` (or ``python -m docs._tools.dashboard`` with matplotlib installed) runs the example
service on PostgreSQL, Redis and RabbitMQ (the local services, or ``--database-url``, ``--redis-url``,
``--broker-url``; a schema, key prefix and exchange of its own, removed afterwards): the API under
uvicorn, and its worker (``python -m cqrskit worker ... --metrics --health-port``). It sends the API a
generated load (creates, batch creates, reads, searches, updates, deletes, refused and invalid
requests) that rises and falls, and scrapes both processes' ``/metrics`` every ``--scrape-interval``
seconds meanwhile, as Prometheus would two targets (each sample labelled ``instance``). Then it
evaluates each panel's expressions of docs/_static/grafana-cqrskit.json at every scrape time
(docs/_tools/promql.py; ``$__rate_interval`` is four scrape intervals, as Grafana makes it) and draws
the panels in the dashboard's grid with their titles, units and legends.

It is not Grafana, and the picture says so: Grafana could not be installed where this was written (no
Debian package, no PyPI distribution, no Docker engine). What it shows is what those expressions give
over that run's samples; an expression the evaluator does not understand stops the script before
anything runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import httpx
from docs._tools.promql import Node, Samples, evaluate, parse, selectors

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "_static" / "grafana-cqrskit.json"
PICTURE = ROOT / "docs" / "_static" / "grafana-cqrskit.png"
ADMIN = {"Authorization": "Bearer admin-token"}
ALICE = {"Authorization": "Bearer alice-token"}
BOB_ID = "00000000-0000-4000-8000-000000000b0b"
RATE_INTERVALS = 4  # Grafana's $__rate_interval: four scrape intervals (at least)


@attrs.frozen
class Target:
    """One query of a panel: its expression, parsed, and its legend format."""

    expression: str
    node: Node
    legend: str


@attrs.frozen
class Panel:
    """A dashboard panel: title, unit, place in the 24-column grid, and its queries."""

    title: str
    unit: str
    x: int
    y: int
    w: int
    h: int
    targets: tuple[Target, ...]


def load_panels(path: Path, rate_interval: float) -> list[Panel]:
    """Read the dashboard JSON and parse every panel's expressions (raising on one not understood)."""
    dashboard = json.loads(path.read_text())
    variables = {"$__rate_interval": f"{round(rate_interval)}s"}
    panels = []
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        targets = tuple(
            Target(target["expr"], parse(target["expr"], variables), target.get("legendFormat", ""))
            for target in panel["targets"]
        )
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        panels.append(Panel(panel["title"], unit, grid["x"], grid["y"], grid["w"], grid["h"], targets))
    return panels


# Running the example service ---------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(url: str, process: subprocess.Popen[bytes], within: float = 60.0) -> None:
    """Poll `url` until it answers 200; fail when `process` exits or after `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with status {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1.0).status_code == 200:  # noqa: PLR2004 - HTTP OK
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {within} seconds")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM `process` and wait for it (SIGKILL after 30 seconds)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@attrs.frozen
class Services:
    """Where the example's database, cache and broker are, and the names this run uses in them."""

    database_url: str
    redis_url: str
    broker_url: str
    name: str = attrs.field(factory=lambda: "users_" + secrets.token_hex(3))

    def environment(self) -> dict[str, str]:
        """Return the example's ``USERS_*`` settings for this run."""
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH")])
            ),
            "USERS_DATABASE_URL": self.database_url,
            "USERS_DATABASE_SCHEMA": self.name,
            "USERS_REDIS_URL": self.redis_url,
            "USERS_CACHE_NAMESPACE": self.name,
            "USERS_BROKER_URL": self.broker_url,
            "USERS_BROKER_NAME": self.name,
            "USERS_DEMO": "1",
            "USERS_SCRYPT_N": "1024",  # cheap password hashing: the load is about the events
            "USERS_LOG_LEVEL": "warning",
        }

    async def create(self) -> None:
        """Create this run's PostgreSQL schema."""
        from cqrskit.sqlalchemy import Database  # noqa: PLC0415 - the example's extras

        database = Database(self.database_url)
        try:
            async with database.engine.begin() as connection:
                await connection.exec_driver_sql(f'CREATE SCHEMA "{self.name}"')
        finally:
            await database.dispose()

    async def remove(self) -> None:
        """Drop this run's schema, queue, exchanges and cache keys."""
        import redis.asyncio as redis  # noqa: PLC0415 - the example's extras

        from cqrskit.events import RabbitMQTransport  # noqa: PLC0415
        from cqrskit.sqlalchemy import Database  # noqa: PLC0415

        database = Database(self.database_url)
        try:
            async with database.engine.begin() as connection:
                await connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
        finally:
            await database.dispose()
        transport = RabbitMQTransport(self.broker_url, exchange=self.name)
        try:
            await transport.delete(f"{self.name}.user-stats", exchanges=True)
        finally:
            await transport.close()
        client = redis.from_url(self.redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{self.name}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@contextlib.contextmanager
def example_service(services: Services, log: Path) -> Iterator[tuple[str, str]]:
    """Run the worker (with metrics) and the API; yield the two ``/metrics`` URLs' bases."""
    env = services.environment()
    worker_port, api_port = free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    with log.open("ab") as out:
        try:
            worker = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [
                    sys.executable,
                    "-m",
                    "examples.users.worker",
                    "--metrics",
                    "--health-port",
                    str(worker_port),
                ],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=out,
            )
            processes.append(worker)
            worker_url = f"http://127.0.0.1:{worker_port}"
            wait_until(f"{worker_url}/readyz", worker)  # its consumer's queue exists: start the API
            api = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "examples.users.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(api_port),
                    "--no-access-log",
                ],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=out,
            )
            processes.append(api)
            api_url = f"http://127.0.0.1:{api_port}"
            wait_until(f"{api_url}/readyz", api)
            yield api_url, worker_url
        finally:
            for process in reversed(processes):
                stop(process)


# The load and the scraping -----------------------------------------------------------------------


def intensity(elapsed: float, duration: float) -> int:
    """How many requests to start this tick: rises to a peak, falls, and ends quiet."""
    phase = min(1.0, elapsed / duration)
    return max(1, round(2 + 10 * math.sin(math.pi * phase) ** 2))


async def one_request(client: httpx.AsyncClient, users: list[str], rng: random.Random) -> None:
    """Send one request of the mix: mostly reads, some writes, a few refused or invalid ones."""
    roll = rng.random()
    if roll < 0.22 or not users:  # noqa: PLR2004 - the mix's shares
        tag = secrets.token_hex(5)
        body = {
            "email": f"{tag}@example.com",
            "username": f"u{tag}",
            "password": "correct horse",
            "full_name": tag,
        }
        response = await client.post("/users", headers=ADMIN, json=body)
        if response.status_code == 201:  # noqa: PLR2004 - Created
            users.append(response.json()["id"])
    elif roll < 0.60:  # noqa: PLR2004
        await client.get(f"/users/{rng.choice(users)}", headers=ADMIN)
    elif roll < 0.72:  # noqa: PLR2004
        await client.get("/users", headers=ADMIN, params={"page_size": 20})
    elif roll < 0.84:  # noqa: PLR2004
        await client.patch(
            f"/users/{rng.choice(users)}", headers=ADMIN, json={"full_name": secrets.token_hex(4)}
        )
    elif roll < 0.89:  # noqa: PLR2004
        await client.delete(f"/users/{users.pop(rng.randrange(len(users)))}", headers=ADMIN)
    elif roll < 0.93:  # noqa: PLR2004
        await client.get("/users/stats", headers=ADMIN)
    elif roll < 0.97:  # noqa: PLR2004 - Alice may not read Bob: UNAUTHORIZED
        await client.get(f"/users/{BOB_ID}", headers=ALICE)
    else:  # invalid input: VALIDATION_ERROR
        await client.post(
            "/users",
            headers=ADMIN,
            json={"email": "nope", "username": "x", "password": "short", "full_name": " "},
        )


async def batch(client: httpx.AsyncClient, size: int) -> None:
    """Create `size` users in one command: `size` events in one commit, a burst for the relay."""
    tag = secrets.token_hex(4)
    users = [
        {
            "email": f"{tag}{i}@example.com",
            "username": f"b{tag}{i}",
            "password": "correct horse",
            "full_name": "B",
        }
        for i in range(size)
    ]
    await client.post("/users/batch", headers=ADMIN, json={"users": users}, timeout=60.0)


async def scrape(client: httpx.AsyncClient, targets: Mapping[str, str], samples: Samples) -> float:
    """Scrape each target's ``/metrics`` once; record every sample with its ``instance``; return the time."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    now = time.time()
    for instance, url in targets.items():
        response = await client.get(f"{url}/metrics", timeout=5.0)
        response.raise_for_status()
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples.add(now, sample.name, {**sample.labels, "instance": instance}, sample.value)
    return now


async def drive(
    api_url: str, worker_url: str, duration: float, scrape_interval: float, tail: float
) -> tuple[Samples, list[float]]:
    """Send the load for `duration` seconds (then `tail` quiet ones) while scraping; return the samples."""
    samples = Samples()
    times: list[float] = []
    rng = random.Random(13)  # noqa: S311 - a load's mix, not a secret
    users: list[str] = []
    targets = {"api": api_url, "worker": worker_url}
    stop_at = time.monotonic() + duration + tail
    started = time.monotonic()
    bursts = {0.35 * duration: 100, 0.7 * duration: 100}  # two batch creates: the backlog shows
    async with httpx.AsyncClient(base_url=api_url, timeout=30.0) as client, httpx.AsyncClient() as scraper:

        async def scraping() -> None:
            while time.monotonic() < stop_at:
                times.append(await scrape(scraper, targets, samples))
                await asyncio.sleep(scrape_interval)

        async def loading() -> None:
            while (elapsed := time.monotonic() - started) < duration:
                for at in [at for at in bursts if at <= elapsed]:
                    await batch(client, bursts.pop(at))
                await asyncio.gather(
                    *(one_request(client, users, rng) for _ in range(intensity(elapsed, duration)))
                )
                await asyncio.sleep(0.25)

        await asyncio.gather(scraping(), loading())
        times.append(await scrape(scraper, targets, samples))
    return samples, times


# Evaluating and drawing --------------------------------------------------------------------------


def legend(format_: str, labels: Mapping[str, str]) -> str:
    """Grafana's legend: each ``{{label}}`` replaced by the series' value of that label."""
    text = format_
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    while "{{" in text:  # a label the series does not have: empty, as Grafana shows it
        start = text.index("{{")
        text = text[:start] + text[text.index("}}", start) + 2 :]
    return text.strip() or "value"


def series_of(panel: Panel, samples: Samples, times: Sequence[float]) -> dict[str, list[float]]:
    """Evaluate the panel's queries at each time: legend to values (NaN where a series has none)."""
    lines: dict[str, list[float]] = {}
    for index, at in enumerate(times):
        for target in panel.targets:
            for labels, value in evaluate(target.node, samples, at).items():
                name = legend(target.legend, dict(labels))
                lines.setdefault(name, [math.nan] * len(times))[index] = value
    return dict(sorted(lines.items()))


def unit_formatter(unit: str) -> Any:
    """Return a matplotlib tick formatter for Grafana's unit: ``short``, ``s`` or ``ops``."""
    from matplotlib.ticker import FuncFormatter  # noqa: PLC0415 - only when drawing

    def short(value: float) -> str:
        for size, suffix in ((1e9, " B"), (1e6, " M"), (1e3, " K")):
            if abs(value) >= size:
                return f"{value / size:.3g}{suffix}"
        return f"{value:.3g}"

    def seconds(value: float) -> str:
        if value == 0:
            return "0 s"
        if abs(value) < 1:
            return f"{value * 1000:.3g} ms"
        return f"{value:.3g} s"

    if unit == "s":
        return FuncFormatter(lambda value, _: seconds(value))
    if unit == "ops":
        return FuncFormatter(lambda value, _: f"{short(value)} ops/s")
    if unit == "short":
        return FuncFormatter(lambda value, _: short(value))
    raise ValueError(f"the unit {unit!r} is not one this script draws: add it to unit_formatter")


COLOURS = [  # distinct from each other on a dark background, in Grafana's spirit
    "#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#b877d9", "#4dd0e1", "#d8d9da",
    "#ff7ac6", "#37872d", "#1f60c4", "#a16942", "#c8f26d", "#8f3bb8", "#ffb357", "#5c7080",
]  # fmt: skip
BACKGROUND = "#111217"
PANEL = "#181b1f"
TEXT = "#ccccdc"
GRID = "#2c3235"


def render(
    panels: Sequence[Panel], samples: Samples, times: Sequence[float], scrape_interval: float, out: Path
) -> None:
    """Draw `panels` in their grid from `samples` at `times`, to the PNG `out`."""
    import matplotlib as mpl  # noqa: PLC0415 - only when drawing

    mpl.use("Agg")
    import matplotlib.dates as mdates  # noqa: PLC0415
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = max(panel.y + panel.h for panel in panels)
    header = 2.6  # grid units above the panels, for the title and what this picture is
    unit_inches = 0.34
    width = 18.0
    height = (rows + header) * unit_inches
    figure = plt.figure(figsize=(width, height), dpi=100, facecolor=BACKGROUND)
    moments = mdates.date2num([datetime.fromtimestamp(at, tz=UTC) for at in times])  # type: ignore[no-untyped-call]
    started = datetime.fromtimestamp(times[0], tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    figure.text(
        0.006,
        1 - 0.55 / (rows + header),
        "cqrskit: outbox, relay and consumers",
        color=TEXT,
        fontsize=17,
        weight="bold",
        va="center",
    )
    figure.text(
        0.006,
        1 - 1.65 / (rows + header),
        "Not a Grafana screenshot. Drawn by docs/_tools/dashboard.py (matplotlib) from the panels' PromQL in "
        "docs/_static/grafana-cqrskit.json,\nevaluated over the /metrics of the example service's API and "
        f"worker, scraped every {scrape_interval:g} s under a generated load, from {started} (times in UTC).",
        color="#9fa7b3",
        fontsize=10.5,
        va="center",
        linespacing=1.4,
    )
    gap = 0.004
    for panel in panels:
        left = panel.x / 24 + gap
        panel_width = panel.w / 24 - 2 * gap
        top = 1 - (panel.y + header) / (rows + header)
        panel_height = panel.h / (rows + header) - 2 * gap * width / height
        box = figure.add_axes((left, top - panel_height - gap, panel_width, panel_height))
        box.set_facecolor(PANEL)
        box.set_xticks([])
        box.set_yticks([])
        for spine in box.spines.values():
            spine.set_color(GRID)
        box.text(
            0.01,
            0.955,
            panel.title,
            transform=box.transAxes,
            color=TEXT,
            fontsize=11.5,
            weight="bold",
            va="top",
        )
        lines = series_of(panel, samples, times)
        legend_rows = max(1, math.ceil(len(lines) / max(1, panel.w // 4)))
        bottom_margin = 0.16 + 0.085 * legend_rows
        plot = figure.add_axes(
            (
                left + 0.055 * panel_width * 24 / panel.w * 0.75,
                top - panel_height - gap + panel_height * bottom_margin,
                panel_width * (1 - 0.05 * 24 / panel.w),
                panel_height * (0.80 - bottom_margin),
            )
        )
        plot.set_facecolor(PANEL)
        for spine in plot.spines.values():
            spine.set_visible(False)
        plot.grid(color=GRID, linewidth=0.7)
        plot.tick_params(colors="#8e8e8e", labelsize=8.5, length=0)
        plot.yaxis.set_major_formatter(unit_formatter(panel.unit))
        clock = mdates.DateFormatter("%H:%M:%S", tz=UTC)  # type: ignore[no-untyped-call]
        plot.xaxis.set_major_locator(mdates.AutoDateLocator(tz=UTC))  # type: ignore[no-untyped-call]
        plot.xaxis.set_major_formatter(clock)
        plot.set_xlim(moments[0], moments[-1])
        if not lines:
            plot.set_yticks([])
            plot.text(
                0.5,
                0.5,
                "No data",
                transform=plot.transAxes,
                color="#8e8e8e",
                fontsize=12,
                ha="center",
                va="center",
            )
            continue
        for index, (name, values) in enumerate(lines.items()):
            plot.plot(moments, values, color=COLOURS[index % len(COLOURS)], linewidth=1.6, label=name)
        finite = [value for values in lines.values() for value in values if math.isfinite(value)]
        if finite and min(finite) >= 0:  # Grafana starts a non-negative axis at 0; all zeros get 0 to 1
            plot.set_ylim(0.0, max(finite) * 1.1 if max(finite) > 0 else 1.0)
        plot.legend(
            loc="upper left",
            bbox_to_anchor=(0.0, -0.13),
            ncol=max(1, panel.w // 4),
            frameon=False,
            fontsize=8.5,
            labelcolor=TEXT,
            handlelength=1.2,
            columnspacing=1.5,
        )
    figure.savefig(out, facecolor=BACKGROUND)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the example under load, scrape it, and draw the dashboard's picture."""
    parser = argparse.ArgumentParser(
        prog="python -m docs._tools.dashboard", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--out", type=Path, default=PICTURE)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--tail", type=float, default=20.0, help="quiet seconds scraped after the load")
    parser.add_argument("--scrape-interval", type=float, default=2.0)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CQRSKIT_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("CQRSKIT_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--broker-url", default=os.environ.get("CQRSKIT_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument(
        "--log",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cqrskit-dashboard.log",
        help="where the processes' output goes (appended)",
    )
    arguments = parser.parse_args(argv)
    rate_interval = RATE_INTERVALS * arguments.scrape_interval
    panels = load_panels(arguments.dashboard, rate_interval)  # fails here on an expression not understood
    services = Services(arguments.database_url, arguments.redis_url, arguments.broker_url)
    asyncio.run(services.create())
    try:
        with example_service(services, arguments.log) as (api_url, worker_url):
            samples, times = asyncio.run(
                drive(api_url, worker_url, arguments.duration, arguments.scrape_interval, arguments.tail)
            )
    finally:
        asyncio.run(services.remove())
    wanted = {
        selector.name for panel in panels for target in panel.targets for selector in selectors(target.node)
    }
    missing = wanted - samples.names()
    never = ", ".join(sorted(missing)) or "none"
    print(f"scraped {len(times)} times, {len(samples.series)} series; queried but never scraped: {never}")
    # Start once a whole rate window has been scraped: before that, Grafana too would draw nothing.
    drawn = [at for at in times if at - times[0] >= rate_interval]
    render(panels, samples, drawn, arguments.scrape_interval, arguments.out)
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
