"""Helpers for the contract tests: manifests and raw requests through kubernetes-asyncio."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client

GPU = "nvidia.com/gpu"


async def raw(api: client.ApiClient, method: str, path: str, *,
              query: list[tuple[str, str]] | None = None, body: Any = None,
              content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    """(status, decoded JSON or text, headers) for one request through the client's
    own connection, auth and TLS settings; errors are returned, not raised."""
    hdrs = {"Accept": "application/json", "Content-Type": content_type, **(headers or {})}
    try:
        resp = await api.call_api(path, method, query_params=query or [],
                                  header_params=hdrs, body=body,
                                  auth_settings=[] if "Authorization" in hdrs
                                  else ["BearerToken"], _preload_content=False,
                                  _return_http_data_only=True)
        status, text, rh = resp.status, await resp.text(), dict(resp.headers)
    except client.ApiException as e:
        status, text, rh = e.status, e.body or "", dict(e.headers or {})
    try:
        return status, json.loads(text), rh
    except ValueError:
        return status, text, rh


def configmap(ns: str, name: str = "settings", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns}, "data": data or {"k": "v"}}


def container(gpus: int = 0, image: str = "busybox:1.36") -> dict[str, Any]:
    c: dict[str, Any] = {"name": "main", "image": image, "command": ["sleep", "1"]}
    if gpus:
        c["resources"] = {"limits": {GPU: str(gpus)}}
    return c


def job(name: str = "train", gpus: int = 0, *, completions: int | None = None,
        parallelism: int | None = None, indexed: bool = False,
        node_selector: dict[str, str] | None = None,
        tolerations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container(gpus)]}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    spec: dict[str, Any] = {"backoffLimit": 0, "template": {"spec": pod_spec}}
    if completions is not None:
        spec["completions"] = completions
    if parallelism is not None:
        spec["parallelism"] = parallelism
    if indexed:
        spec["completionMode"] = "Indexed"
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": spec}


def deployment(name: str = "web", replicas: int = 2, image: str = "nginx:1.27",
               gpus: int = 0) -> dict[str, Any]:
    c = container(gpus, image)
    c.pop("command")
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [c]}}}}


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 10.0,
                     interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; its last value otherwise fails."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s (last: {value!r})")
        await asyncio.sleep(interval)
