"""Feature computation on several Ray workers, each with its own engine (on its own GPU where there are several).

``routehead features|bench|train-router --workers N [--ray-address ADDR]`` hand the queries that the cache lacks to
:class:`RayWorkers`; the driver writes each result into the same resumable cache as one process does
(:func:`routehead_rag.features.extract_features`), so a run can be stopped and resumed with any worker count. A
worker that dies is restarted by Ray and its in-flight queries are retried (``max_restarts``, ``max_task_retries``);
nothing else is lost. Ray is an optional extra: ``pip install 'routehead-rag[ray]'``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

from .features import FeatureJob, QueryFeatures, compute_features
from .recipe import Recipe
from .reranker import RouteHeadReranker

IN_FLIGHT_PER_WORKER = 2  # queries queued on each worker, so that none waits for the driver
# "0": a Ray node started here registers on 127.0.0.1 instead of the machine's network address (Ray's default on
# Linux, reachable from other machines); Ray reads it when it is imported
LOOPBACK_SETTING = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

logger = logging.getLogger(__name__)


def keep_local_ray_on_loopback() -> None:
    """Make a Ray cluster that this process starts bind its node to 127.0.0.1 (call it before ``import ray``)."""
    os.environ[LOOPBACK_SETTING] = "0"


def connect(address: str | None, needed_by: str) -> tuple[Any, int]:
    """The ``ray`` module, joined to the cluster at ``address`` (``None``: a local Ray, started if none runs), and the
    GPUs each actor takes: 1 where the cluster has GPUs, else 0. ``needed_by`` names the option in the error
    that says how to install Ray. A local Ray started here stays on loopback (:func:`keep_local_ray_on_loopback`)."""
    if address is None:
        keep_local_ray_on_loopback()
    try:
        import ray
    except ImportError:
        raise ValueError(f"{needed_by} needs Ray: pip install 'routehead-rag[ray]' (or pip install 'ray[serve]').") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        if address is None and ray.util.get_node_ip_address() != "127.0.0.1":
            logger.warning("the local Ray node registered on %s, reachable from other machines: Ray was imported "
                           "before %s=0 was set; set it before importing ray to keep the node on 127.0.0.1.",
                           ray.util.get_node_ip_address(), LOOPBACK_SETTING)
    return ray, 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0


class _Worker:
    """A Ray actor holding one engine built from ``engine`` (RouteHeadReranker keyword arguments; its recipe
    ``Recipe(mode="all")`` unless one is given)."""

    def __init__(self, engine: dict[str, Any], threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.reranker = RouteHeadReranker(**{"recipe": Recipe(mode="all"), **engine})

    def cache_key(self) -> dict:
        return self.reranker.cache_key()

    def compute(self, job: FeatureJob) -> QueryFeatures:
        return compute_features(self.reranker, job.qid, job.query, job.docs, job.doc_ids, job.qrels)


class RayWorkers:
    """``n`` Ray actors computing features; connects to ``address`` (``None``: a local Ray, started if none runs).

    engine: the keyword arguments of the driver's :class:`RouteHeadReranker` (``model``, ``dtype``, ``device``,
    ``max_doc_words``, ...); every worker's engine must have the driver's cache key (:meth:`check`).
    Each worker takes one GPU where the cluster has GPUs, else ``cpus_per_worker`` CPUs (and as many torch threads).
    """

    def __init__(self, n: int, engine: dict[str, Any], address: str | None = None, cpus_per_worker: int = 1,
                 max_restarts: int = 3) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"--workers must be a positive whole number, not {n!r}.")
        ray, gpus = connect(address, "--workers")
        self.ray = ray
        options: dict[str, Any] = {"max_restarts": max_restarts, "max_task_retries": max_restarts,
                                   "num_cpus": cpus_per_worker, "num_gpus": gpus}
        actor = ray.remote(**options)(_Worker)
        self.n = n
        self.actors = [actor.remote(engine, cpus_per_worker) for _ in range(n)]

    def check(self, cache_key: dict) -> None:
        """Refuse workers whose engines would compute other features than the driver's (another model or setting)."""
        for key in self.ray.get([a.cache_key.remote() for a in self.actors]):
            if key != cache_key:
                raise ValueError(f"a worker's engine differs from this process's ({key} != {cache_key}): give the "
                                 "workers the same model, dtype and scoring settings (and the same weights file).")

    def map(self, jobs: Sequence[FeatureJob]) -> Iterator[QueryFeatures]:
        """Each job's features, in the order they finish, at most :data:`IN_FLIGHT_PER_WORKER` per worker at a time."""
        pending, queue, turn = {}, list(jobs)[::-1], 0
        while queue or pending:
            while queue and len(pending) < IN_FLIGHT_PER_WORKER * self.n:
                job = queue.pop()
                pending[self.actors[turn % self.n].compute.remote(job)] = job
                turn += 1
            [done], _ = self.ray.wait(list(pending), num_returns=1)
            del pending[done]
            yield self.ray.get(done)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
