"""One cluster's API transport: rate limit, retries, error translation, counting, watch.

Every request to a cluster goes through `KubeClient.request`, which:
- waits for a token from the cluster's bucket (QPS and burst, defaults 50/100, like
  client-go's defaults scaled for a controller that talks to many clusters);
- sends it as raw JSON bytes through `clusters.transport` (an aiohttp session of ours,
  the auth of kubernetes-asyncio's `Configuration`, a TLS context shared per CA): the
  ApiClient's typed-model path cost more than the request (issue 22);
- retries 5xx, 429 and connection errors a finite number of times with full-jitter
  exponential backoff, honouring `Retry-After` (capped), and nothing else;
- translates everything into `clusters.errors`;
- counts calls per verb and reports each outcome to the cluster's health tracker.

Watches are newline-delimited JSON over a long GET; `watch()` yields raw event dicts and
turns a 410 (HTTP or ERROR event) into `WatchExpired`, so the caller re-lists. Objects
stay plain dicts: decoding into typed models costs more than everything else here and
would drop fields we need to compare (managedFields, unknown kinds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio.client import ApiClient, Configuration

from clusters.errors import ClusterError, TransientError, Unreachable, WatchExpired, from_status
from clusters.transport import Transport

JSON = dict[str, Any]
APPLY_PATCH = "application/apply-patch+yaml"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
"""The Accept header of a metadata-only GET (client-go's `metadata` client asks the same):
a `meta.k8s.io/v1` `PartialObjectMetadata`, the object's `metadata` alone; a server that
cannot convert answers with the whole object (the plain JSON after the comma)."""

_COUNTING: ContextVar[list[int] | None] = ContextVar("aifleet_api_calls", default=None)


@contextlib.contextmanager
def count_calls() -> Iterator[list[int]]:
    """Count the API calls (retries included) made in this context: `box[0]`.

    A context variable, not a difference of `ClientStats.total`: the heartbeat, the
    informers and drift corrections talk to the same cluster concurrently, and their
    calls are not the cost of what this task is doing.
    """
    box = [0]
    token = _COUNTING.set(box)
    try:
        yield box
    finally:
        _COUNTING.reset(token)


@dataclass(slots=True)
class RetryPolicy:
    attempts: int = 5
    base: float = 0.1
    cap: float = 5.0
    max_retry_after: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return random.uniform(0, min(self.cap, self.base * (2**attempt)))


class TokenBucket:
    """QPS with a burst; `acquire` waits for a token (fair enough: FIFO by wake-up)."""

    def __init__(self, qps: float = 50.0, burst: int = 100,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = asyncio.Lock()
        self.waits = 0
        """Acquisitions that had to wait for a token (a test counts pacing, not seconds)."""

    async def acquire(self) -> None:
        if self.qps <= 0:
            return
        async with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            wait = (1 - self._tokens) / self.qps
            self._tokens = 0.0
            self._last = now + wait
            self.waits += 1
        await self._sleep(wait)


LAG_TOLERANCE = 0.1
"""A timeout counts against a cluster only if our loop lagged for at most this share of
the request's timeout while it waited (`lagged_timeout`)."""


def lagged_timeout(error: BaseException, lag: float, timeout: float) -> bool:
    """Did this request time out because our own loop was busy, not the server?

    A timeout fires on the loop's clock: when the loop stalls, the answer can arrive in
    time and sit unread until the timer and the socket are both ready, and the timer
    may win. So a timeout during which the loop lagged more than `LAG_TOLERANCE` of the
    timeout is no evidence against the cluster. A refused or reset connection is: the
    kernel said so, however late we read it."""
    return isinstance(error, TimeoutError) and lag > LAG_TOLERANCE * timeout


class Outcome:
    """What the health tracker hears about each request."""

    OK = "ok"
    ERROR = "error"  # answered, but 5xx/429
    NO_ANSWER = "no_answer"
    BUSY = "busy"  # timed out while our own loop lagged: says nothing about the cluster


@dataclass(slots=True)
class ClientStats:
    calls: Counter[str] = field(default_factory=Counter)
    """API calls by verb (get, list, watch, apply, patch, create, update, delete)."""
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class KubeClient:
    def __init__(self, name: str, api: ApiClient | Configuration, *, qps: float = 50.0,
                 burst: int = 100,
                 retry: RetryPolicy | None = None,
                 on_outcome: Callable[[str, str], None] | None = None,
                 timeout: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 stalled: Callable[[], float] | None = None,
                 keepalive: float = 15.0) -> None:
        self.name = name
        self.api = api if isinstance(api, ApiClient) else None
        self.transport = Transport(api.configuration if isinstance(api, ApiClient) else api,
                                   keepalive=keepalive)
        self.bucket = TokenBucket(qps, burst, clock=clock, sleep=sleep)
        self._sleep = sleep
        self.retry = retry or RetryPolicy()
        self.stats = ClientStats()
        self.timeout = timeout
        self._on_outcome = on_outcome or (lambda _o, _d: None)
        """Told every request's outcome and what it was (`GET /version: 503 ...`), for
        the health tracker's state and the reason it gives for it."""
        self._stalled = stalled or (lambda: 0.0)
        """Seconds our event loop has been late so far (`controllers.runtime.looplag`)."""

    async def close(self) -> None:
        await self.transport.close()
        if self.api is not None:
            await self.api.close()

    async def request(self, method: str, path: str, *, verb: str,
                      query: dict[str, str] | None = None, body: Any = None,
                      content_type: str = "application/json",
                      request_timeout: float | None = None, retry: bool = True,
                      accept: str = "application/json") -> JSON:
        """Send one request (with retries); the decoded JSON body, or a ClusterError.
        `accept`: the Accept header, e.g. `METADATA_ONLY` for an object's metadata."""
        attempt = 0
        while True:
            try:
                return await self._once(method, path, verb, query, body, content_type,
                                        request_timeout or self.timeout, accept)
            except TransientError as e:
                if not retry or attempt + 1 >= self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt, e.retry_after)
                attempt += 1
                self.stats.retries += 1
                await self._sleep(delay)

    async def _once(self, method: str, path: str, verb: str, query: dict[str, str] | None,
                    body: Any, content_type: str, request_timeout: float,
                    accept: str = "application/json") -> JSON:
        await self.bucket.acquire()
        self.stats.calls[verb] += 1
        box = _COUNTING.get()
        if box is not None:
            box[0] += 1
        stalled_at = self._stalled()
        headers = await self.transport.headers(accept)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = body if isinstance(body, bytes) else _encode(body)
        try:
            answer = await self.transport.request(method, path, query=query,
                                                  headers=headers, body=data,
                                                  within=request_timeout)
            data, status = answer.body, answer.status
            retry_after = _retry_after(answer.retry_after)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            self.stats.errors["unreachable"] += 1
            what = f"{method} {path}: {type(e).__name__}: {e}"
            lag = self._stalled() - stalled_at
            self._on_outcome(Outcome.BUSY if lagged_timeout(e, lag, request_timeout)
                             else Outcome.NO_ANSWER, what)
            raise Unreachable(what, cluster=self.name) from e
        decoded = _decode(data)
        if 200 <= status < 300:
            self._on_outcome(Outcome.OK, "")
            return decoded
        err = from_status(status, decoded, self.name, retry_after)
        self.stats.errors[err.reason or str(status)] += 1
        self._on_outcome(Outcome.ERROR if status >= 500 or status == 429 else Outcome.OK,
                         f"{method} {path}: {status} {err.reason or ''}".rstrip())
        raise err

    async def watch(self, path: str, *, resource_version: str | None,
                    query: dict[str, str] | None = None,
                    timeout_seconds: int = 300) -> AsyncGenerator[JSON, None]:
        """Raw watch events after `resource_version`; ends when the server ends it."""
        q = {"watch": "true", "allowWatchBookmarks": "true",
             "timeoutSeconds": str(timeout_seconds), **(query or {})}
        if resource_version:
            q["resourceVersion"] = resource_version
        await self.bucket.acquire()
        self.stats.calls["watch"] += 1
        try:
            resp = await self.transport.watch(
                path, query=q, headers=await self.transport.headers(),
                connect_timeout=10, read_timeout=timeout_seconds + 30)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            self._on_outcome(Outcome.NO_ANSWER, f"watch {path}: {type(e).__name__}")
            raise Unreachable(f"watch {path}: {type(e).__name__}", cluster=self.name) from e
        try:
            if resp.status != 200:
                err = from_status(resp.status, _decode(await resp.read()), self.name)
                self._on_outcome(Outcome.ERROR if resp.status >= 500 else Outcome.OK,
                                 f"watch {path}: {resp.status} {err.reason or ''}".rstrip())
                raise err
            self._on_outcome(Outcome.OK, "")
            async for line in resp.lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    obj = event.get("object") or {}
                    if obj.get("code") == 410:
                        raise WatchExpired(str(obj.get("message", "resourceVersion too old")),
                                           cluster=self.name, status=410)
                    raise from_status(int(obj.get("code") or 500), obj, self.name)
                yield event
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise Unreachable(f"watch {path} cut: {type(e).__name__}",
                              cluster=self.name) from e
        except json.JSONDecodeError as e:
            raise Unreachable(f"watch {path}: malformed event", cluster=self.name) from e
        finally:
            await resp.aclose()


def _encode(body: Any) -> bytes:
    """Compact JSON (apply-patch+yaml bodies too: JSON is YAML), no typed-model walk."""
    return json.dumps(body, separators=(",", ":")).encode()


def _decode(data: bytes) -> JSON:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"message": data[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"items": value}


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True, slots=True)
class ResourceType:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def collection(self, namespace: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{base}/{self.plural}"

    def item(self, name: str, namespace: str | None = None) -> str:
        return f"{self.collection(namespace)}/{quote(name, safe='')}"


NAMESPACE = ResourceType("v1", "Namespace", "namespaces", False)
NODE = ResourceType("v1", "Node", "nodes", False)
POD = ResourceType("v1", "Pod", "pods", True)
SERVICE = ResourceType("v1", "Service", "services", True)
DEPLOYMENT = ResourceType("apps/v1", "Deployment", "deployments", True)
JOB = ResourceType("batch/v1", "Job", "jobs", True)
LEASE = ResourceType("coordination.k8s.io/v1", "Lease", "leases", True)
RESOURCE_SLICE = ResourceType("resource.k8s.io/v1", "ResourceSlice", "resourceslices", False)
RESOURCE_CLAIM_TEMPLATE = ResourceType("resource.k8s.io/v1", "ResourceClaimTemplate",
                                       "resourceclaimtemplates", True)
JOBSET = ResourceType("jobset.x-k8s.io/v1alpha2", "JobSet", "jobsets", True)
"""Rendered on clusters whose `spec.stack` says DRA / JobSet (`fleet.render.forward`)."""
RESOURCE_CLAIM = ResourceType("resource.k8s.io/v1", "ResourceClaim", "resourceclaims", True)
KUEUE_API = "kueue.x-k8s.io/v1beta2"
"""The Kueue version read and written (the only one Kueue serves since v0.20)."""
RESOURCE_FLAVOR = ResourceType(KUEUE_API, "ResourceFlavor", "resourceflavors", False)
CLUSTER_QUEUE = ResourceType(KUEUE_API, "ClusterQueue", "clusterqueues", False)
LOCAL_QUEUE = ResourceType(KUEUE_API, "LocalQueue", "localqueues", True)
KUEUE_WORKLOAD = ResourceType(KUEUE_API, "Workload", "workloads", True)

TYPES: dict[tuple[str, str], ResourceType] = {
    (t.api_version, t.kind): t
    for t in (NAMESPACE, NODE, POD, SERVICE, DEPLOYMENT, JOB, LEASE, RESOURCE_SLICE,
              RESOURCE_CLAIM, RESOURCE_CLAIM_TEMPLATE, JOBSET, RESOURCE_FLAVOR,
              CLUSTER_QUEUE, LOCAL_QUEUE, KUEUE_WORKLOAD)
}


def type_of(obj: JSON) -> ResourceType:
    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    try:
        return TYPES[key]
    except KeyError:
        raise ClusterError(f"unsupported kind {key[1]} ({key[0]})") from None
