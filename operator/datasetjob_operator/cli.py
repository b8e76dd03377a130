"""Cluster-facing `dsj` commands: operator, status, logs, regenerate, retry-failed.

Registered into the data plane's `dsj` through the `datasetjob.cli` entry point, so the
data plane never imports the control plane.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any, cast

from datasetjob import API_GROUP, API_VERSION
from datasetjob.errors import ExitCode

from .crd import PLURAL
from .naming import ANNOTATION_REGENERATE, ANNOTATION_RETRY_FAILED, LABEL_DATASETJOB, LABEL_ROLE

if TYPE_CHECKING:  # kubernetes is imported where used: `dsj` loads this module also where it is not installed
    from datetime import datetime

    from kubernetes import client


def operator_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dsj operator", description="Run the DatasetJob operator.")
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch only these namespaces (default: $DSJ_WATCH_NAMESPACES, else all)",
    )
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL ('' to disable)"
    )
    parser.add_argument(
        "--peering",
        default=None,
        help="Kopf peering object shared by several replicas, one of which acts "
        "(default: $DSJ_PEERING, else standalone)",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    import logging
    import os
    import socket

    import kopf

    from . import handlers, peering  # handlers: imported to register them

    level = "DEBUG" if args.verbose else os.environ.get("DSJ_LOG_LEVEL", "INFO")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # a line per timer tick says nothing; keep Kopf's warnings and errors
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    namespaces = args.namespace or list(handlers.SETTINGS.namespaces)
    # Kopf derives its identity from the login name by default, which a non-root container
    # user without a passwd entry does not have; the host (pod) name identifies us anyway.
    identity = f"{socket.gethostname()}/{os.getpid()}"
    peering_name = handlers.SETTINGS.peering if args.peering is None else args.peering
    kopf.run(
        standalone=not peering_name,
        peering_name=peering_name or None,
        priority=peering.priority() if peering_name else None,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness or None,
        identity=identity,  # type: ignore[arg-type]  # a NewType of str that kopf does not export
    )
    return ExitCode.OK


def _clients(args: argparse.Namespace) -> tuple[client.CustomObjectsApi, client.CoreV1Api, client.BatchV1Api]:
    from kubernetes import client, config

    config.load_kube_config(context=getattr(args, "context", None))  # type: ignore[no-untyped-call]
    api = client.ApiClient()
    return client.CustomObjectsApi(api), client.CoreV1Api(api), client.BatchV1Api(api)


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        namespace: str = args.namespace
        return namespace
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        return active["context"].get("namespace") or "default"
    except Exception:
        return "default"


def _get(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    # The client declares `object`: a custom object is a JSON object.
    return cast(dict[str, Any], custom.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name))


def cmd_status(args: argparse.Namespace) -> int:
    custom, core, _ = _clients(args)
    ns = _namespace(args)
    obj = _get(custom, ns, args.name)
    if args.output == "json":
        print(json.dumps(obj.get("status") or {}, indent=2))
        return ExitCode.OK
    from rich.console import Console
    from rich.table import Table

    st = obj.get("status") or {}
    shards, items, cache, out = (st.get(k) or {} for k in ("shards", "items", "cache", "output"))
    table = Table(title=f"{ns}/{args.name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "phase", f"{st.get('phase', '(not reconciled yet)')}" + (f" ({st['reason']})" if st.get("reason") else "")
    )
    if st.get("message"):
        table.add_row("message", st["message"])
    table.add_row("run", f"{st.get('runId', '-')} (attempt {st.get('attempt', '0')})")
    plan = st.get("plan") or {}
    if plan.get("key"):  # the generate Job's indexes are the plan's work packets, not the shards
        table.add_row(
            "plan",
            f"{plan.get('toGenerate', 0)} items to generate in {plan.get('packets', 0)} work packets, "
            f"{plan.get('reused', 0)} reused; {plan.get('shardsWithWork', 0)} of {shards.get('total', 0)} shards "
            f"with work, {plan.get('shardsReused', 0)} reused",
        )
    unit = "packets" if plan.get("key") else "shards"
    table.add_row(
        unit,
        f"{shards.get('succeeded', 0)}/{plan.get('packets', 0) if plan.get('key') else shards.get('total', 0)} "
        f"succeeded, {shards.get('active', 0)} active, {shards.get('failed', 0)} failed"
        + (f" [{shards['failedIndexes']}]" if shards.get("failedIndexes") else ""),
    )
    table.add_row("items", f"{items.get('done', 0)}/{items.get('total', 0)} done, {items.get('failed', 0)} failed")
    table.add_row("reuse", f"{items.get('generated', 0)} generated, {items.get('reused', 0)} reused from earlier runs")
    table.add_row("cache", f"{cache.get('hits', 0)} hits, {cache.get('misses', 0)} misses")
    usage = st.get("usage")
    if usage:
        table.add_row(
            "spend",
            f"{usage.get('requests', 0):g} requests, {usage.get('tokens', 0):g} tokens, {usage.get('cost', 0):g} cost",
        )
    if out:
        table.add_row("dataset", f"{out.get('uri')} ({out.get('rows')} rows, sha256 {out.get('sha256')})")
    for failure in st.get("failures") or []:
        table.add_row(f"shard {failure['shard']}", f"exit {failure.get('exitCode')}: {failure.get('message')}")
    Console().print(table)
    events = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={args.name}")
    for ev in sorted(events.items, key=lambda e: str(e.last_timestamp or ""))[-10:]:
        print(f"  {ev.last_timestamp}  {ev.type or '':<8} {ev.reason or '':<16} {ev.message}")
    return ExitCode.OK


def cmd_logs(args: argparse.Namespace) -> int:
    custom, core, _ = _clients(args)
    ns = _namespace(args)
    st = _get(custom, ns, args.name).get("status") or {}
    selector = f"{LABEL_DATASETJOB}={args.name},{API_GROUP}/run-id={st.get('runId')}"
    selector += f",{LABEL_ROLE}={'combine' if args.combine else 'generate'}"
    pods = core.list_namespaced_pod(ns, label_selector=selector).items
    if args.shard is not None:
        pods = [
            p
            for p in pods
            if (_metadata(p).annotations or {}).get("batch.kubernetes.io/job-completion-index") == str(args.shard)
        ]
    if not pods:
        print("no pods found", file=sys.stderr)
        return ExitCode.FAILED
    for pod in sorted(pods, key=_created):
        name, status = _metadata(pod).name, pod.status
        assert name is not None and status is not None  # the API server returns both on every pod
        print(f"==> {name} ({status.phase})")
        print(core.read_namespaced_pod_log(name, ns, tail_lines=args.tail))
    return ExitCode.OK


def _metadata(pod: client.V1Pod) -> client.V1ObjectMeta:
    assert pod.metadata is not None  # the API server returns every pod with its metadata
    return pod.metadata


def _created(pod: client.V1Pod) -> datetime:
    created = _metadata(pod).creation_timestamp
    assert created is not None  # the API server sets it on every object
    return created


def _annotate(args: argparse.Namespace, key: str) -> int:
    custom, _, _ = _clients(args)
    ns = _namespace(args)
    token = args.token or f"{int(time.time())}-{uuid.uuid4().hex[:6]}"
    custom.patch_namespaced_custom_object(
        API_GROUP, API_VERSION, ns, PLURAL, args.name, {"metadata": {"annotations": {key: token}}}
    )
    print(f"{ns}/{args.name}: {key}={token}")
    return ExitCode.OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the cluster commands to `dsj`'s subparsers."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("name")
        p.add_argument("-n", "--namespace")
        p.add_argument("--context")

    # Its own options (see `dsj operator --help`) pass through untouched.
    p = sub.add_parser("operator", help="run the Kubernetes operator", add_help=False)
    p.set_defaults(fn=lambda a: operator_main(a.extra), passthrough=True)

    p = sub.add_parser("status", help="status, shards and failures of a DatasetJob in the cluster")
    common(p)
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("logs", help="logs of a DatasetJob's pods")
    common(p)
    p.add_argument("--shard", type=int)
    p.add_argument("--combine", action="store_true")
    p.add_argument("--tail", type=int, default=200)
    p.set_defaults(fn=cmd_logs)

    p = sub.add_parser("regenerate", help="start a new run of an unchanged spec")
    common(p)
    p.add_argument("--token")
    p.set_defaults(fn=lambda a: _annotate(a, ANNOTATION_REGENERATE))

    p = sub.add_parser("retry-failed", help="rerun only the failed shards/items of the last run")
    common(p)
    p.add_argument("--token")
    p.set_defaults(fn=lambda a: _annotate(a, ANNOTATION_RETRY_FAILED))
