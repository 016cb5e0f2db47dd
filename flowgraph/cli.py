"""``flowgraph`` command line: run | validate | diff | viz | nodes | top | bench."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .errors import FlowgraphError, GraphError, GraphErrors

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _load_plan(args: argparse.Namespace) -> Any:
    from .compile import compile_plan
    from .spec import load_spec

    spec = load_spec(args.graph, overrides=args.set)
    return compile_plan(spec)


def _print_errors(exc: FlowgraphError) -> None:
    if isinstance(exc, GraphErrors):
        for error in exc.errors:
            print(error.line(), file=sys.stderr)
    elif isinstance(exc, GraphError):
        print(exc.line(), file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        plan = _load_plan(args)
    except FlowgraphError as exc:
        _print_errors(exc)
        return EXIT_INVALID
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    elif args.plan:
        print(plan.describe())
    else:
        print(f"{args.graph}: ok ({len(plan.nodes)} nodes, {len(plan.edges)} edges, {len(plan.stages)} stages)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    try:
        plan = _load_plan(args)
    except FlowgraphError as exc:
        _print_errors(exc)
        return EXIT_INVALID
    from .runtime import Runtime

    for name in plan.order:
        node = plan.nodes[name]
        if node.device_why.startswith("auto") and node.cls.gpu:
            logging.getLogger("flowgraph.place").info("%s: %s -> %s", name, node.device_why, node.device)
    runtime = Runtime(plan, host=args.host, port=args.port, metrics_port=args.metrics_port,
                      drain_timeout=args.drain_timeout, serve=args.serve or args.top or None)
    if args.watch:
        from .live import LiveGraph
        from .yaml_loader import read_graph_file

        file, text = read_graph_file(args.graph)
        runtime.live = LiveGraph(runtime, file, text, overrides=args.set)

    async def main() -> int:
        task = asyncio.ensure_future(runtime.run())
        await asyncio.wait({task, asyncio.ensure_future(runtime.ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if runtime.ready.is_set() and runtime.server is not None:
            banner = [f"flowgraph: graph {plan.name!r} running", f"  server   {runtime.server.url}/"]
            for title, path in runtime.server.links.items():
                banner.append(f"  {title:<8} {runtime.server.url}{path}")
            banner.append(f"  metrics  {runtime.server.url}/metrics  ({runtime.server.url}/api/metrics as JSON)")
            print("\n".join(banner), flush=True)
        extra: list[asyncio.Task[Any]] = []
        if args.duration:
            extra.append(asyncio.create_task(_stop_after(runtime, args.duration)))
        if runtime.live is not None and runtime.ready.is_set():
            extra.append(asyncio.create_task(runtime.live.watch(args.graph)))
        if args.top:
            from .top import live_table

            extra.append(asyncio.create_task(live_table(runtime.snapshot, until=task)))
        try:
            return await task
        finally:
            for t in extra:
                t.cancel()

    try:
        return asyncio.run(main())
    except FlowgraphError as exc:
        _print_errors(exc)
        return EXIT_FAILED


async def _stop_after(runtime: Any, seconds: float) -> None:
    await runtime.ready.wait()
    await asyncio.sleep(seconds)
    runtime.request_stop()


def cmd_diff(args: argparse.Namespace) -> int:
    """Exit 0 when the two graphs would run the same, 1 when they differ, 2 when either is invalid."""
    from .compile import compile_plan
    from .live import unfused
    from .rewire import diff_plans
    from .spec import load_spec

    try:
        old, new = (unfused(compile_plan(load_spec(path, overrides=args.set))) for path in (args.old, args.new))
    except FlowgraphError as exc:
        _print_errors(exc)
        return EXIT_INVALID
    changes = diff_plans(old, new)
    print(json.dumps(changes.to_dict(), indent=2) if args.json else changes.describe())
    return EXIT_OK if changes.empty else EXIT_FAILED


def cmd_viz(args: argparse.Namespace) -> int:
    try:
        plan = _load_plan(args)
    except FlowgraphError as exc:
        _print_errors(exc)
        return EXIT_INVALID
    from . import viz

    fmt = args.format or (Path(args.output).suffix.lstrip(".") if args.output else "dot")
    fmt = {"md": "mermaid", "mmd": "mermaid", "htm": "html", "gv": "dot"}.get(fmt, fmt)
    data: bytes
    if fmt == "dot":
        data = viz.to_dot(plan).encode()
    elif fmt == "mermaid":
        data = viz.to_mermaid(plan).encode()
    elif fmt == "html":
        data = viz.to_html(plan, args.live).encode()
    elif fmt in ("svg", "png"):
        try:
            data = viz.render_dot(viz.to_dot(plan), fmt)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
    else:
        print(f"error: unknown format {fmt!r} (expected dot, svg, png, mermaid or html)", file=sys.stderr)
        return EXIT_INVALID
    if args.output:
        Path(args.output).write_bytes(data)
        print(f"wrote {args.output}")
    else:
        sys.stdout.buffer.write(data)
    return EXIT_OK


def cmd_nodes(args: argparse.Namespace) -> int:
    from .nodeinfo import describe_nodes

    try:
        text = describe_nodes(args.name, as_json=args.json)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_INVALID
    print(text)
    return EXIT_OK


def cmd_top(args: argparse.Namespace) -> int:
    from .top import watch_url

    try:
        asyncio.run(watch_url(args.url.rstrip("/") + "/api/metrics", once=args.once))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowgraph", description="Live video + CV platforms from YAML graphs.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG shows per-frame processing times")
    sub = parser.add_subparsers(dest="command", required=True)

    def graph_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("graph", help="graph YAML file")
        p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                       help="override a param (repeatable); also NODE.device=..., NODE.enabled=false")

    p = sub.add_parser("validate", help="check a graph without starting anything")
    graph_args(p)
    p.add_argument("--plan", action="store_true", help="print the execution plan (stages, placement, edges)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a graph until it ends or Ctrl-C")
    graph_args(p)
    p.add_argument("--host", default=None, help="HTTP server address (default from the graph, else 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="HTTP server port (default from the graph, else 8080)")
    p.add_argument("--metrics-port", type=int, default=None, help="also serve metrics on this port")
    p.add_argument("--serve", action="store_true", help="start the HTTP server even if no node needs it")
    p.add_argument("--top", action="store_true", help="show a live table of node and edge metrics")
    p.add_argument("--duration", type=float, default=0, help="stop after this many seconds")
    p.add_argument("--drain-timeout", type=float, default=5.0, help="seconds lossless edges may take to drain")
    p.add_argument("--watch", action="store_true",
                   help="apply edits of the graph file while it runs (and PUT /api/graph when GRAPH_TOKEN is set)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("diff", help="what changing graph OLD into NEW would do to a running graph")
    p.add_argument("old", help="graph YAML as it runs")
    p.add_argument("new", help="the edited graph YAML")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="override in both")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("viz", help="draw a graph (dot, svg, png, mermaid, html)")
    graph_args(p)
    p.add_argument("-o", "--output", help="output file (format from its suffix unless --format)")
    p.add_argument("--format", choices=["dot", "svg", "png", "mermaid", "html"])
    p.add_argument("--live", metavar="URL", help="html: poll this metrics URL (…/api/metrics) for live figures")
    p.set_defaults(func=cmd_viz)

    p = sub.add_parser("nodes", help="list node types with ports and params")
    p.add_argument("name", nargs="?", help="show one node type in full")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_nodes)

    p = sub.add_parser("top", help="live metrics of a running graph")
    p.add_argument("url", nargs="?", default="http://127.0.0.1:8080", help="the graph's server URL")
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.set_defaults(func=cmd_top)

    sub.add_parser("bench", help="run the benchmark suite and write a report (flowgraph bench --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the bench runner has its own options
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from .bench import main as bench_main

        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if str(args.log_level).upper() != "DEBUG":
        logging.getLogger("aioice").setLevel(logging.WARNING)
        logging.getLogger("aiortc").setLevel(logging.WARNING)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
