#!/usr/bin/env python3
"""Direct vs bosun proxy vs Envoy, in one run, on this machine.

Same route for both proxies (one HTTP listener -> one static cluster -> nginx), HTTP/1.1
keep-alive, one worker each (bosun --concurrency 1, envoy --concurrency 1). Repetitions are
interleaved (direct, relay, nginx, bosun, envoy, direct, ...) so drift affects all alike.

Two references show what this machine allows a proxy at all:
  * relay: `bench-relay` (bench/relay), one tokio thread that only moves bytes, one
    read and one write on each side per request, no HTTP; the floor of any user-space proxy;
  * nginx: nginx as an HTTP reverse proxy (one worker, upstream keep-alive), a mature C proxy.

Measures, per target:
  * max throughput: wrk, 1 thread, 32 connections, --duration seconds;
  * latency at a fixed 1000 rps: oha -q 1000 (p50, p99);
  * CPU time of the proxy per 10k requests (from /proc during the wrk run);
  * RSS of the proxy after the load (anonymous and file-backed);
  * startup time: from spawning the proxy to the first proxied 200.
Prints the numbers and the ratios bosun/envoy.

Usage: bench/bench.py [--duration 10] [--reps 3] [--case plain|resilience]
Needs: wrk, oha, nginx, envoy (BOSUN_ENVOY or .venv/bin/envoy); run bench/run.sh to get them.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, path="/", timeout=20.0):
    """Polls until a GET answers 200; returns the elapsed seconds."""
    start = time.monotonic()
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() - start < timeout:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(request)
                head = s.recv(64)
                if head.startswith(b"HTTP/1.1 200"):
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.0005)
    raise RuntimeError(f"nothing answered 200 on port {port}")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    status = open(f"/proc/{pid}/status").read()
    values = {}
    for key in ("VmRSS", "RssAnon", "RssFile"):
        match = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
        values[key] = int(match.group(1)) if match else 0
    return values


def run_nginx(name, workdir, http_body):
    """Starts one nginx worker in the foreground with `http_body` inside its `http` block."""
    conf = os.path.join(workdir, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {workdir};
  proxy_temp_path {workdir};
  fastcgi_temp_path {workdir};
  uwsgi_temp_path {workdir};
  scgi_temp_path {workdir};
{http_body}
}}
""")
    return subprocess.Popen(["nginx", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def nginx(port, workdir):
    """The backend: a fixed 200 on 127.0.0.1-3."""
    return run_nginx("nginx", workdir, f"""  server {{
    listen 127.0.0.1:{port};
    listen 127.0.0.2:{port};
    listen 127.0.0.3:{port};
    location / {{ return 200 "hello from the backend\\n"; }}
  }}""")


def bootstrap(listen_port, backend_port, admin_port, case):
    route = '{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}'
    filters = '[{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]'
    cluster_extra = ""
    endpoints = [backend_port]
    if case == "resilience":
        # Retries configured, a fault filter at 0 %, LEAST_REQUEST over three endpoints.
        route = ('{"match": {"prefix": "/"}, "route": {"cluster": "backend", "retry_policy": '
                 '{"retry_on": "5xx,connect-failure", "num_retries": 2}}}')
        filters = ('[{"name": "envoy.filters.http.fault", "typed_config": {"@type": '
                   '"type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault", '
                   '"abort": {"http_status": 503, "percentage": {"numerator": 0}}}}, ' + filters[1:])
        cluster_extra = ', "lb_policy": "LEAST_REQUEST"'
        endpoints = [backend_port, backend_port, backend_port]
    lb_endpoints = ", ".join(
        f'{{"endpoint": {{"address": {{"socket_address": {{"address": "127.0.0.{i + 1}", "port_value": {p}}}}}}}}}'
        for i, p in enumerate(endpoints))
    return f"""{{
  "admin": {{"address": {{"socket_address": {{"address": "127.0.0.1", "port_value": {admin_port}}}}}}},
  "static_resources": {{
    "listeners": [{{
      "name": "bench",
      "address": {{"socket_address": {{"address": "127.0.0.1", "port_value": {listen_port}}}}},
      "filter_chains": [{{"filters": [{{
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {{
          "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
          "stat_prefix": "bench",
          "route_config": {{"name": "bench", "virtual_hosts": [{{"name": "all", "domains": ["*"], "routes": [{route}]}}]}},
          "http_filters": {filters}
        }}
      }}]}}]
    }}],
    "clusters": [{{
      "name": "backend", "type": "STATIC", "connect_timeout": "1s"{cluster_extra},
      "load_assignment": {{"cluster_name": "backend", "endpoints": [{{"lb_endpoints": [{lb_endpoints}]}}]}}
    }}]
  }}
}}"""


def nginx_proxy(port, backend_port, workdir):
    """nginx as a reverse proxy to the backend: one worker, keep-alive to the upstream."""
    return run_nginx("nginx-proxy", workdir, f"""  upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}""")


def worker_pid(process):
    """The process doing the work: nginx's only worker, or the process itself."""
    children = open(f"/proc/{process.pid}/task/{process.pid}/children").read().split()
    return int(children[0]) if children else process.pid


def start_reference(kind, listen_port, backend_port, workdir):
    if kind == "relay":
        process = subprocess.Popen(
            [os.path.join(ROOT, "target/release/bench-relay"), str(listen_port), str(backend_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        process = nginx_proxy(listen_port, backend_port, workdir)
    wait_http(listen_port)
    return process


def start_proxy(kind, config_path, listen_port):
    if kind == "bosun":
        # The data-plane binary (`bosun proxy` runs the same code inside the one CLI binary).
        cmd = [os.path.join(ROOT, "target/release/bosun-proxy"), "-c", config_path,
               "--concurrency", "1", "-l", "error"]
    else:
        cmd = [envoy_binary(), "-c", config_path, "--concurrency", "1", "-l", "error",
               "--disable-hot-restart"]
    started = time.monotonic()
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    startup = wait_http(listen_port)
    return process, startup, time.monotonic() - started


def envoy_binary():
    path = os.environ.get("BOSUN_ENVOY") or os.path.join(ROOT, ".venv/bin/envoy")
    if not os.path.exists(path):
        sys.exit("Envoy not found: set BOSUN_ENVOY or run bench/run.sh")
    return path


def wrk(port, duration):
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{duration}s", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, total


def oha_binary():
    return shutil.which("oha") or "/tmp/oha/bin/oha"


def oha(port, duration):
    out = subprocess.run([oha_binary(), "-z", f"{duration}s", "-q", "1000", "-c", "8",
                          "--no-tui", "--output-format", "json", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    percentiles = data["latencyPercentiles"]
    return percentiles["p50"] * 1000.0, percentiles["p99"] * 1000.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--case", choices=["plain", "resilience"], default="plain")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="bosun-bench-")
    backend_port = free_port()
    backend = nginx(backend_port, work)
    wait_http(backend_port)
    targets = ("direct", "relay", "nginx", "bosun", "envoy")
    results = {name: {"rps": [], "p50": [], "p99": [], "cpu10k": [], "rss": [], "startup": []}
               for name in targets}
    try:
        for rep in range(args.reps):
            for target in targets:
                if target == "direct":
                    rps, _ = wrk(backend_port, args.duration)
                    p50, p99 = oha(backend_port, args.duration)
                    results[target]["rps"].append(rps)
                    results[target]["p50"].append(p50)
                    results[target]["p99"].append(p99)
                    continue
                listen_port, admin_port = free_port(), free_port()
                if target in ("relay", "nginx"):
                    process, startup = start_reference(target, listen_port, backend_port, work), None
                else:
                    config = os.path.join(work, f"{target}.json")
                    with open(config, "w") as f:
                        f.write(bootstrap(listen_port, backend_port, admin_port, args.case))
                    process, startup, _ = start_proxy(target, config, listen_port)
                try:
                    pid = worker_pid(process)
                    wrk(listen_port, 2)  # warm up
                    cpu_before = cpu_seconds(pid)
                    rps, total = wrk(listen_port, args.duration)
                    cpu = cpu_seconds(pid) - cpu_before
                    p50, p99 = oha(listen_port, args.duration)
                    rss = rss_kib(pid)
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=10)
                entry = results[target]
                entry["rps"].append(rps)
                entry["p50"].append(p50)
                entry["p99"].append(p99)
                entry["cpu10k"].append(cpu / total * 10_000)
                entry["rss"].append(rss)
                if startup is not None:
                    entry["startup"].append(startup * 1000.0)
                print(f"rep {rep + 1}: {target}: {rps:,.0f} rps, p50 {p50:.3f} ms, "
                      f"cpu {cpu / total * 10_000:.3f} s/10k, rss {rss['VmRSS'] / 1024:.1f} MiB"
                      + (f", startup {startup * 1000:.1f} ms" if startup is not None else ""), flush=True)
    finally:
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    print(f"\ncase: {args.case}, {args.reps} interleaved repetitions of {args.duration}s, medians")
    print(f"{'':8} {'rps':>10} {'p50 ms':>8} {'p99 ms':>8} {'cpu s/10k':>10} {'RSS MiB':>8} "
          f"{'anon':>6} {'file':>6} {'start ms':>9}")
    for name, r in results.items():
        line = f"{name:8} {med(r['rps']):>10,.0f} {med(r['p50']):>8.3f} {med(r['p99']):>8.3f}"
        if r["cpu10k"]:
            rss = r["rss"][-1]
            line += (f" {med(r['cpu10k']):>10.3f} {rss['VmRSS'] / 1024:>8.1f} {rss['RssAnon'] / 1024:>6.1f}"
                     f" {rss['RssFile'] / 1024:>6.1f}")
            line += f" {med(r['startup']):>9.1f}" if r["startup"] else f" {'-':>9}"
        print(line)
    b, e, d = results["bosun"], results["envoy"], results["direct"]
    print("\nratios (bosun / envoy):")
    print(f"  throughput          {med(b['rps']) / med(e['rps']):.2f}x")
    print(f"  cpu per request     {med(b['cpu10k']) / med(e['cpu10k']):.2f}x")
    print(f"  rss                 {b['rss'][-1]['VmRSS'] / e['rss'][-1]['VmRSS']:.2f}x")
    print(f"  startup             {med(b['startup']) / med(e['startup']):.2f}x")
    print("references (/ envoy): what the machine allows a proxy")
    for name in ("relay", "nginx"):
        r = results[name]
        print(f"  {name:6} throughput {med(r['rps']) / med(e['rps']):.2f}x, "
              f"cpu per request {med(r['cpu10k']) / med(e['cpu10k']):.2f}x")
    print("added p50 latency over direct at 1000 rps:")
    print("  " + ", ".join(f"{name} {med(results[name]['p50']) - med(d['p50']):.3f} ms"
                           for name in ("relay", "nginx", "bosun", "envoy")))


if __name__ == "__main__":
    main()
