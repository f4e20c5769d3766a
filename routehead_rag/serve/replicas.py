"""``routehead serve --ray``: the same HTTP app on Ray Serve, one engine per replica, as many replicas as traffic needs.

Each replica builds its own engine and, from it, the app of :func:`routehead_rag.serve.create_app` (same routes,
request and response shapes, limits, auth and metrics; the app is built on the replica, after its engine, through
Ray Serve's deferred ingress). Requests are batched by each replica's own batcher, not by Ray Serve's. Ray Serve's
proxy spreads requests over the replicas, lets each hold at most its queue plus one batch, and answers 503 beyond
``max_queue`` requests waiting in the proxy; a replica that dies is replaced by Ray Serve's controller. ``/metrics``
and ``/ready`` answer for the replica that takes the request. Needs the ``ray`` extra.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..reranker import RouteHeadReranker
from ..workers import connect
from .app import ServeSettings, create_app

APP_NAME = "routehead"
START_TIMEOUT_S = 300.0  # how long start-up is retried where Ray loses an actor while starting (--start-timeout)


class RerankReplica:
    """One replica: an engine from ``engine`` (RouteHeadReranker keyword arguments) and the app over it."""

    def __init__(self, engine: dict[str, Any], settings: dict[str, Any]) -> None:
        self.engine = RouteHeadReranker(**engine)
        self.settings = ServeSettings(**settings)

    def __serve_build_asgi_app__(self):
        return create_app(self.engine, self.settings)


@dataclass(frozen=True)
class Scaling:
    """Replicas: ``replicas`` fixed, or between ``min_replicas`` and ``max_replicas`` by load (each replica aims at
    ``target_ongoing`` requests in progress)."""

    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing: float = 2.0

    def options(self) -> dict[str, Any]:
        if self.min_replicas is None and self.max_replicas is None:
            if self.replicas < 1:
                raise ValueError(f"--replicas must be at least 1, not {self.replicas}.")
            return {"num_replicas": self.replicas}
        low, high = self.min_replicas or 1, self.max_replicas or max(self.min_replicas or 1, self.replicas)
        if not 1 <= low <= high:
            raise ValueError(f"autoscaling needs 1 <= --min-replicas <= --max-replicas, not {low} and {high}.")
        return {"autoscaling_config": {"min_replicas": low, "max_replicas": high,
                                       "initial_replicas": min(max(self.replicas, low), high),
                                       "target_ongoing_requests": self.target_ongoing}}


def deploy(engine: dict[str, Any], settings: ServeSettings, scaling: Scaling, host: str = "127.0.0.1",
           port: int = 8080, address: str | None = None, blocking: bool = False,
           start_timeout_s: float = START_TIMEOUT_S) -> None:
    """Start (or join, with ``address``) a Ray cluster, serve the app on ``host:port`` from ``scaling``'s replicas,
    and return once every replica is ready (``blocking``: serve until interrupted, then shut the replicas down).
    Start-up is retried for ``start_timeout_s`` where Ray loses an actor while starting (:func:`start_within`)."""
    _, gpus = connect(address, "routehead serve --ray")
    from ray import serve

    deployment = serve.deployment(
        serve.ingress()(RerankReplica), name="RerankReplica",
        max_ongoing_requests=settings.max_queue + 16,  # the replica's own queue answers 429 before Ray queues more
        max_queued_requests=settings.max_queue,  # in the proxy, beyond every replica's queue: 503
        graceful_shutdown_timeout_s=settings.timeout_s, health_check_period_s=2, health_check_timeout_s=30,
        ray_actor_options={"num_cpus": 1, "num_gpus": gpus},
        **scaling.options())

    def start() -> None:
        serve.start(http_options={"host": host, "port": port})
        serve.run(deployment.bind(engine, asdict(settings)), name=APP_NAME, route_prefix="/")

    start_within(start, start_timeout_s, reset=serve.shutdown)
    if blocking:
        try:
            while True:
                time.sleep(10)
        except KeyboardInterrupt:
            pass
        finally:
            serve.shutdown()


def start_within(start: Callable[[], None], timeout_s: float, reset: Callable[[], None], pause_s: float = 5.0) -> None:
    """Run ``start`` until it returns, for at most ``timeout_s``: where Ray loses one of its actors while starting
    (on a loaded machine it has killed the Serve proxy before it ran: ``ActorDiedError ... cancelled before it
    started running``), ``reset`` and try again after ``pause_s``. Past the deadline, a ``ValueError`` that says what
    to do instead of Ray's traceback."""
    from ray.exceptions import RayActorError

    deadline, tries = time.monotonic() + timeout_s, 0
    while True:
        tries += 1
        try:
            start()
            return
        except RayActorError as err:
            lost = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        reset()
        if time.monotonic() + pause_s > deadline:
            break
        time.sleep(pause_s)
    raise ValueError(f"Ray Serve did not start within {timeout_s:.0f} s ({tries} tries; Ray lost an actor while "
                     f"starting: {lost}). The machine is likely short of CPU or memory for the replicas: retry with "
                     "fewer --replicas or a longer --start-timeout, stop other heavy jobs, or serve one engine "
                     "without --ray (the same API).")


def shutdown() -> None:
    """Stop the replicas and Ray Serve (what a test or a script that called :func:`deploy` does at the end)."""
    from ray import serve

    serve.shutdown()
