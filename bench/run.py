"""Run warren and the brokers it is compared with, interleaved, and report medians and ratios.

Each selected broker is started once (free loopback ports, temp dir) and all stay up for the
session; then for each scenario, round after round, every broker that speaks its protocol gets
one run in turn (A B A B …), so slow drift of the shared machine hits all brokers alike. The
figure per scenario and broker is the median over rounds; the ratio is warren's median over the
other broker's. `recovery` runs on fresh warren instances of its own.

The exit status is 0 only when every broker started and every run gave figures: a broker
that cannot start, a load generator that failed or a run that delivered nothing is reported
on stderr, counted in the table's `runs` column and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from bench.brokers import BROKERS, Broker, BrokerStartError, Warren
from bench.scenarios import (LOADGEN_SCENARIOS, RECOVERY_BROKERS, SCENARIO_GROUPS, Loadgen,
                             failover, recovery)

EXTRA_SCENARIOS = ("recovery", "failover")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--brokers", default="warren,rabbitmq,mosquitto,activemq",
                   help=f"comma-separated, of: {', '.join(BROKERS)}")
    p.add_argument("--scenarios", default=",".join(LOADGEN_SCENARIOS),
                   help="comma-separated, of: "
                        f"{', '.join([*LOADGEN_SCENARIOS, *EXTRA_SCENARIOS])}; "
                        + "; ".join(f"{group} = {','.join(names)}"
                                    for group, names in SCENARIO_GROUPS.items()))
    p.add_argument("--rounds", type=int, default=3, help="runs per scenario and broker")
    p.add_argument("--seconds", type=float, default=10, help="publish window of each loadgen run")
    p.add_argument("--warmup", type=float, default=0,
                   help="seconds of one unrecorded run per broker before each scenario's rounds "
                        "(a JVM's JIT, RabbitMQ's first queue)")
    p.add_argument("--messages", type=int, default=1_000_000, help="recovery: messages to recover")
    p.add_argument("--out", type=Path, default=Path("results.json"), help="JSON results file")
    p.add_argument("--loadgen-dir", type=Path, default=None,
                   help="run the `loadgen` package in this directory instead of bench's own "
                        "(same scenarios and JSON), to cross-check figures")
    p.add_argument("--cross-check", action="store_true",
                   help="with --loadgen-dir: run both load generators in turn on every "
                        "broker and scenario, one table row per broker and load generator")
    p.add_argument("--rabbitmq-server", default=None,
                   help="the rabbitmq-server script (default: rabbitmq-server on PATH)")
    p.add_argument("--mosquitto", default=None,
                   help="the mosquitto program (default: mosquitto on PATH)")
    p.add_argument("--activemq", default=None,
                   help="the activemq launcher (default: activemq on PATH)")
    p.add_argument("--warren-cmd", default=shlex.join(Warren.default_command()),
                   help="how to invoke warren (`run` and its options are appended)")
    p.add_argument("--warren-store", choices=("journal", "sql"), default="journal")
    p.add_argument("--warren-store-url", default=None,
                   help="SQL store URL (default: an SQLite file in the temp data dir)")
    args = p.parse_args(argv)
    if args.cross_check and args.loadgen_dir is None:
        p.error("--cross-check needs --loadgen-dir")
    args.brokers = args.brokers.split(",")
    args.scenarios = list(dict.fromkeys(
        name for given in args.scenarios.split(",")
        for name in SCENARIO_GROUPS.get(given, (given,))))
    for name in args.brokers:
        if name not in BROKERS:
            p.error(f"unknown broker {name!r}")
    for name in args.scenarios:
        if name not in LOADGEN_SCENARIOS and name not in EXTRA_SCENARIOS:
            p.error(f"unknown scenario {name!r}")
    return args


def broker_factory(name: str, args: argparse.Namespace, root: Path):
    """A function making fresh instances of broker `name`, each in a new directory under root."""
    cls = BROKERS[name]
    if cls is Warren:
        cls = functools.partial(Warren, command=shlex.split(args.warren_cmd),
                                store=args.warren_store, store_url=args.warren_store_url)
    else:
        programs = {"rabbitmq": args.rabbitmq_server, "mosquitto": args.mosquitto,
                    "activemq": args.activemq}
        cls = functools.partial(cls, program=programs[name])
    counter = itertools.count()
    return lambda: cls(Path(tempfile.mkdtemp(prefix=f"{name}{next(counter)}-", dir=root)))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_loadgen_scenarios(args, factories, runs: list[dict]) -> None:
    loadgens = [Loadgen(args.loadgen_dir)]
    if args.cross_check:
        loadgens.insert(0, Loadgen())
    scenarios = [LOADGEN_SCENARIOS[n] for n in args.scenarios if n in LOADGEN_SCENARIOS]
    wanted = [n for n in args.brokers if any(s.protocol in BROKERS[n].protocols for s in scenarios)]
    with contextlib.ExitStack() as stack:
        brokers: list[Broker] = []
        for name in wanted:
            broker = factories[name]()
            try:
                log(f"{name}: started in {broker.start():.1f} s, ports {broker.ports}")
            except (BrokerStartError, OSError) as error:
                log(f"{name}: cannot start, skipped: {error}")
                runs.append({"scenario": "start", "broker": name, "error": str(error)})
                continue
            stack.callback(broker.stop)
            brokers.append(broker)
        for scenario in scenarios:
            for broker, loadgen in itertools.product(brokers, loadgens):
                if args.warmup and scenario.protocol in broker.protocols:
                    result = scenario.run(broker, args.warmup, loadgen)
                    log(f"{scenario.name} warm-up {broker.name} ({loadgen.name}): "
                        f"{result.get('error') or _brief(result)}")
            for round_no in range(args.rounds):
                for broker, loadgen in itertools.product(brokers, loadgens):
                    if scenario.protocol not in broker.protocols:
                        continue
                    result = scenario.run(broker, args.seconds, loadgen)
                    log(f"{scenario.name} round {round_no + 1} {broker.name} ({loadgen.name}): "
                        f"{result.get('error') or _brief(result)}")
                    runs.append({"scenario": scenario.name, "broker": broker.name,
                                 "loadgen": loadgen.name, "round": round_no + 1,
                                 "result": result})


def run_extra_scenarios(args, factories, runs: list[dict]) -> None:
    if "failover" in args.scenarios and "warren" in args.brokers:
        try:
            result = failover(cycles=args.rounds)
        except (BrokerStartError, OSError, RuntimeError, AssertionError) as error:
            result = {"error": str(error)}
        if any(figures.get("lost") for figures in result.values() if isinstance(figures, dict)):
            result["error"] = "confirmed messages lost across a failover"
        log(f"failover warren: {result}")
        runs.append({"scenario": "failover", "broker": "warren", "round": 1, "result": result})
    if "recovery" not in args.scenarios:
        return
    for round_no in range(args.rounds):
        for name in args.brokers:
            if name not in RECOVERY_BROKERS:
                continue
            try:
                result = recovery(factories[name], args.messages)
            except (BrokerStartError, OSError, RuntimeError) as error:
                result = {"error": str(error)}
            if result.get("lost"):
                result["error"] = f"{result['lost']} confirmed messages not recovered"
            log(f"recovery round {round_no + 1} {name}: {result}")
            runs.append({"scenario": "recovery", "broker": name, "round": round_no + 1,
                         "result": result})


def _brief(result: dict) -> str:
    return (f"con_rate {result['con_rate']:.0f}/s, p50 {result['lat_ms']['p50']:.2f} ms, "
            f"p99 {result['lat_ms']['p99']:.2f} ms, lost {result['lost']}, dups {result['dups']}")


# -- summary --------------------------------------------------------------------------------
LOADGEN_FIGURES = {  # summary key -> how to read it from one loadgen result
    "con_rate": lambda r: r["con_rate"],
    "lat_p50_ms": lambda r: r["lat_ms"]["p50"],
    "lat_p99_ms": lambda r: r["lat_ms"]["p99"],
    "broker_cpu_pct": lambda r: (r.get("broker") or {}).get("cpu_pct_window"),
    # CPU used by neither broker nor client (other tenants): high means the figures are noise.
    "other_cpu_pct": lambda r: r.get("other_cpu_pct_window"),
}
RECOVERY_FIGURES = {key: (lambda r, key=key: r[key])
                    for key in ("publish_rate", "port_s", "ready_s", "recovered", "queued_rss_mb",
                                "recovered_rss_mb", "recovery_peak_rss_mb", "drain_rate")}


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict]) -> list[dict]:
    """One row per (scenario, broker, load generator): medians, lost/dups summed over rounds,
    and warren's ratio to the broker, both measured by the same load generator."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for run in runs:
        if "result" in run:
            key = (run["scenario"], run["broker"], run.get("loadgen", ""))
            groups.setdefault(key, []).append(run["result"])
    scenario_order = list(dict.fromkeys(scenario for scenario, _, _ in groups))
    loadgen_order = list(dict.fromkeys(loadgen for _, _, loadgen in groups))
    rows = []
    for (scenario, broker, loadgen), results in sorted(groups.items(), key=lambda item: (
            scenario_order.index(item[0][0]), loadgen_order.index(item[0][2]),
            item[0][1] != "warren")):
        good = [r for r in results if "error" not in r]
        figures = {"recovery": RECOVERY_FIGURES, "failover": {}}.get(scenario, LOADGEN_FIGURES)
        row = {"scenario": scenario, "broker": broker, "loadgen": loadgen, "runs": len(good),
               "errors": len(results) - len(good)}
        row.update({key: _median(read(r) for r in good) for key, read in figures.items()})
        row["lost"] = sum(r.get("lost", 0) for r in good)
        row["dups"] = sum(r.get("dups", 0) for r in good)
        if scenario == "failover" and good:
            row["lockers"] = good[-1]  # figures by locker: file lock, database lease
        rows.append(row)
    by_key = {(row["scenario"], row["broker"], row["loadgen"]): row for row in rows}
    for row in rows:
        ours = by_key.get((row["scenario"], "warren", row["loadgen"]))
        if row["broker"] == "warren" or ours is None:
            continue
        for key in ("con_rate", "lat_p50_ms", "lat_p99_ms"):
            if ours.get(key) and row.get(key):
                row[f"warren_ratio_{key}"] = ours[key] / row[key]
    return rows


def markdown(rows: list[dict]) -> str:
    def num(value, fmt="{:,.0f}"):
        return "–" if value is None else fmt.format(value)

    def ratio(row, key):
        value = row.get(f"warren_ratio_{key}")
        return "" if value is None else f"{value:.2f}×"

    lines = []
    if any(row["scenario"] not in EXTRA_SCENARIOS for row in rows):
        lines += ["| scenario | broker | runs | con_rate msg/s | p50 ms | p99 ms | broker CPU % "
                  "| other CPU % | lost | dups | warren/this rate | warren/this p50 "
                  "| warren/this p99 |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    def runs(row):
        return f"{row['runs']}" + (f" ({row['errors']} failed)" if row["errors"] else "")

    several_loadgens = len({row["loadgen"] for row in rows if row["loadgen"]}) > 1

    def broker(row):
        return row["broker"] + (f" ({row['loadgen']})" if several_loadgens else "")

    for row in rows:
        if row["scenario"] in EXTRA_SCENARIOS:
            continue
        lines.append(
            f"| {row['scenario']} | {broker(row)} | {runs(row)} | {num(row['con_rate'])} "
            f"| {num(row['lat_p50_ms'], '{:.2f}')} | {num(row['lat_p99_ms'], '{:.2f}')} "
            f"| {num(row['broker_cpu_pct'])} | {num(row['other_cpu_pct'])} "
            f"| {row['lost']} | {row['dups']} "
            f"| {ratio(row, 'con_rate')} | {ratio(row, 'lat_p50_ms')} "
            f"| {ratio(row, 'lat_p99_ms')} |")
    lines += latency_side_by_side(rows)
    recovered = [row for row in rows if row["scenario"] == "recovery"]
    if recovered:
        lines += ([""] if lines else []) + [
            "| recovery | runs | publish msg/s | restart → port s | restart → all messages s "
            "| recovered | RSS queued MB | RSS recovered MB | peak RSS recovering MB "
            "| drain msg/s |", "|---|---|---|---|---|---|---|---|---|---|"]
        for row in recovered:
            lines.append(f"| {row['broker']} | {runs(row)} | {num(row['publish_rate'])} "
                         f"| {num(row['port_s'], '{:.2f}')} | {num(row['ready_s'], '{:.2f}')} "
                         f"| {num(row['recovered'])} | {num(row.get('queued_rss_mb'))} "
                         f"| {num(row.get('recovered_rss_mb'))} "
                         f"| {num(row.get('recovery_peak_rss_mb'))} "
                         f"| {num(row.get('drain_rate'))} |")
    for row in rows:
        if row["scenario"] != "failover" or not row.get("lockers"):
            continue
        lines += ([""] if lines else []) + [
            "| failover | cycles | kill → new master s (median / max) | kill → first confirmed "
            "publish s (median / max) | confirmed | lost |", "|---|---|---|---|---|---|"]
        for locker, f in row["lockers"].items():
            lines.append(f"| {locker} | {f['cycles']} | {f['takeover_s']['median']:.2f} / "
                         f"{f['takeover_s']['max']:.2f} | {f['failover_s']['median']:.2f} / "
                         f"{f['failover_s']['max']:.2f} | {f['confirmed']:,} | {f['lost']} |")
    return "\n".join(lines)


def latency_side_by_side(rows: list[dict]) -> list[str]:
    """The fixed-rate scenarios again, one row each and one column per broker (p50 / p99 ms),
    with warren's p99 over the best other broker's: issue 21's "p99 at 1,000 msg/s" for every
    protocol at a glance. Empty when no latency scenario ran."""
    latency_rows = [row for row in rows if row["scenario"] in LOADGEN_SCENARIOS
                    and LOADGEN_SCENARIOS[row["scenario"]].latency and row["runs"]]
    if not latency_rows:
        return []
    brokers = list(dict.fromkeys(row["broker"] for row in latency_rows))
    by_key = {(row["scenario"], row["broker"]): row for row in latency_rows}
    lines = ["", "| latency at 1,000 msg/s, p50 / p99 ms | "
             + " | ".join(brokers) + " | warren p99 / best other p99 |",
             "|---|" + "---|" * (len(brokers) + 1)]
    for scenario in dict.fromkeys(row["scenario"] for row in latency_rows):
        cells, others = [], []
        for broker in brokers:
            row = by_key.get((scenario, broker))
            if row is None or row["lat_p99_ms"] is None:
                cells.append("–")
                continue
            cells.append(f"{row['lat_p50_ms']:.2f} / {row['lat_p99_ms']:.2f}"
                         + (f" ({row['lost']} lost)" if row["lost"] else ""))
            if broker != "warren":
                others.append(row["lat_p99_ms"])
        ours = by_key.get((scenario, "warren"))
        best = min(others, default=None)
        ratio = (f"{ours['lat_p99_ms'] / best:.2f}×" if ours and ours["lat_p99_ms"] and best
                 else "")
        lines.append(f"| {scenario} | " + " | ".join(cells) + f" | {ratio} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="warren-bench-") as root:
        factories = {name: broker_factory(name, args, Path(root)) for name in args.brokers}
        try:
            run_loadgen_scenarios(args, factories, runs)
            run_extra_scenarios(args, factories, runs)
        finally:
            rows = summarize(runs)
            config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
            args.out.write_text(json.dumps({"config": config, "summary": rows, "runs": runs},
                                           indent=1) + "\n")
            print(markdown(rows))
            log(f"results written to {args.out}")
    failed = failures(runs)
    for failure in failed:
        log(f"FAILED: {failure}")
    return 1 if failed else 0


def failures(runs: list[dict]) -> list[str]:
    """What went wrong, one line each: brokers that did not start, runs without figures."""
    failed = []
    for run in runs:
        error = run.get("error") or (run.get("result") or {}).get("error")
        if error:
            where = run["scenario"] + (f" round {run['round']}" if "round" in run else "")
            failed.append(f"{where} {run['broker']}: {error.splitlines()[0]}")
    return failed
