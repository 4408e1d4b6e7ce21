"""Load test of the serving tier on loopback with wrk (Debian's `wrk`), beside a peer on the same work.

For each model (the `make run` champion; `--ml1m`: the ML-1M-sized model of bench/ml1m_model.py) it
starts `python -m serve` on the local S3 of a `make run` state, and (unless --peer none) BentoML serving
the same ONNX file with the same request and answer in its own throwaway venv (.run/bench/venv-bentoml,
installed by this script, never in the project's requirements). Then, in each of --repeats rounds, for
each connection count, wrk drives one and then the other with the same real user histories (POST
/recommend), and the table gives the medians over rounds and the ratio measured within each round.

Also measured on freshrec: zero errors while the champion pointer moves --flips times during a run, and
p99 with 200 slow connections held open (headers trickling) against p99 without them, in one run.

    make run                                    # leaves .run/demo (its S3 state and champion)
    python bench/serve_load.py --state .run/demo --ml1m --repeats 3 --out bench/results/serve_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PEER_VENV = ROOT / ".run" / "bench" / "venv-bentoml"
PEER_PINS = ["bentoml==1.4.40", "onnxruntime==1.32.0", "numpy==2.4.6"]

PEER_SERVICE = '''
import json, os
import bentoml
import numpy as np

FOLDER = os.environ["PEER_MODEL_DIR"]


@bentoml.service(workers=int(os.environ.get("PEER_WORKERS", "2")), traffic={"timeout": 10})
class Recommender:
    """The same work as freshrec's POST /recommend: ids -> left-padded window -> the ONNX graph -> top k."""

    def __init__(self):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.path.join(FOLDER, os.environ["PEER_SERVE_FILE"]), opts)
        self.items = json.load(open(os.path.join(FOLDER, "items.json")))
        self.index = {item: i + 1 for i, item in enumerate(self.items)}
        self.window = json.load(open(os.path.join(FOLDER, "config.json")))["max_len"]

    @bentoml.api
    def recommend(self, history: list[str], k: int = 10) -> dict:
        known = [self.index[i] for i in history if i in self.index][-self.window:]
        x = np.zeros((1, self.window), np.int64)
        if known:
            x[0, -len(known):] = known
        scores, idx = self.session.run(None, {"item_ids": x})
        out = [{"item": self.items[i - 1], "score": float(s)} for i, s in zip(idx[0].tolist(), scores[0].tolist())
               if i > 0 and s != float("-inf")]
        return {"items": out[:k], "unknown": len(history) - len(known)}
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited ({proc.returncode}); see {log}")
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} not ready in {timeout}s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---- wrk ----------------------------------------------------------------------------------------------
def lua_script(bodies: list[bytes], path: Path, headers: dict | None = None) -> Path:
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items()]
    lines.append("bodies = {" + ",".join("[==[" + b.decode() + "]==]" for b in bodies) + "}")
    lines.append("n = 0")
    lines.append("request = function() n = n % #bodies + 1; return wrk.format(nil, nil, nil, bodies[n]) end")
    path.write_text("\n".join(lines) + "\n")
    return path


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(url: str, script: Path, connections: int, seconds: float) -> dict:
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "--latency", "--timeout", "5s", "-s",
           str(script), url]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "connections": connections,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(pct["50"]),
        "p90_ms": _ms(pct["90"]),
        "p99_ms": _ms(pct["99"]),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
    }


# ---- the servers ---------------------------------------------------------------------------------------
def start_freshrec(bucket: str, workers: int, tmp: Path, env: dict, *flags: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = tmp / f"freshrec-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "serve", "--port", str(port), "--workers", str(workers), "--poll", "0.2",
         "--bucket", bucket, "--cache-dir", str(tmp / f"cache-{port}"), *flags],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/readyz", 120, proc, log)
    return proc, f"http://127.0.0.1:{port}"


def peer_python() -> Path:
    py = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != " ".join(PEER_PINS):
        shutil.rmtree(PEER_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", *PEER_PINS], check=True)
        stamp.write_text(" ".join(PEER_PINS))
    return py


def start_peer(folder: Path, serve_file: str, workers: int, tmp: Path) -> tuple[subprocess.Popen, str]:
    py = peer_python()
    port = free_port()
    svc = tmp / "peer"
    svc.mkdir(exist_ok=True)
    (svc / "service.py").write_text(PEER_SERVICE)
    log = tmp / f"bentoml-{port}.log"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "PEER_MODEL_DIR": str(folder),
        "PEER_SERVE_FILE": serve_file,
        "PEER_WORKERS": str(workers),
        "BENTOML_DO_NOT_TRACK": "True",
        "BENTOML_HOME": str(tmp / "bentoml-home"),
    }
    proc = subprocess.Popen(
        [str(py), "-m", "bentoml", "serve", "service:Recommender", "--host", "127.0.0.1", "--port", str(port)],
        cwd=svc, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/readyz", 180, proc, log)
    return proc, f"http://127.0.0.1:{port}"


# ---- the models ----------------------------------------------------------------------------------------
def demo_model(s3, registry_cls, bucket: str, demo_bucket: str, tmp: Path) -> tuple[str, list[list[str]]]:
    """The make-run champion (copied with its registry into `bucket`), and real ML-100K histories."""
    from tasks.s3 import ensure_bucket
    from tasks.sources import load_dataset

    ensure_bucket(s3, bucket)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=demo_bucket, Prefix="models/")
    for key in [o["Key"] for page in pages for o in page.get("Contents", [])]:
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": demo_bucket, "Key": key})
    events = load_dataset("ml-100k").events
    histories = [g.astype(str).tolist()[-50:] for _, g in events.groupby("user_id")["item_id"]]
    return registry_cls(s3, bucket, "seqrec").pointer()[0]["version"], histories[:200]


def ml1m(s3, registry_cls, bucket: str) -> tuple[str, list[list[str]]]:
    from bench.ml1m_model import build, publish
    from tasks.benchmark import benchmark
    from tasks.params import load_params
    from tasks.s3 import ensure_bucket

    folder, inputs = build()
    ensure_bucket(s3, bucket)
    registry = registry_cls(s3, bucket, "seqrec")
    version = "2000-12-31-ml1msize"
    if registry.pointer()[0] is None:  # the served file is the benchmark step's choice, made once
        params = load_params()
        bparams, top_k = params["benchmark"], params["export"]["top_k"]
        bench = benchmark(folder / "challenger", folder / "onnx", inputs, bparams, top_k)
        publish(registry, folder, version, bench["serve_file"])
    items = json.loads((folder / "challenger" / "items.json").read_text())
    histories = [[items[i - 1] for i in row if i > 0] for row in inputs.tolist()]
    return version, histories[:200]


def second_version(registry, tmp: Path, name: str | None = None, catalogue=lambda items: items[::-1]) -> str:
    """The champion's graph with its catalogue reversed (or given another `catalogue(items)`), published as
    `name` (default `<day>-flipflop`): a different model, with other answers, to move the pointer to (also
    tests/serve/test_follow.py)."""
    pointer, _ = registry.pointer()
    name = name or pointer["version"][:10] + "-flipflop"
    if name in registry.versions():
        return name
    src = tmp / f"{name}-src"
    registry.download(pointer["version"], src)
    files = {f: src / f for f in json.loads((src / "manifest.json").read_text())["files"]}
    items = json.loads((src / "items.json").read_text())
    (tmp / f"{name}-items.json").write_text(json.dumps(catalogue(items)))
    files["items.json"] = tmp / f"{name}-items.json"
    registry.publish(name, files, {"serve_file": pointer["serve_file"]})
    return name


# ---- the measurements ----------------------------------------------------------------------------------
def with_flips(url: str, script: Path, registry, versions: list[str], flips: int, seconds: float) -> dict:
    done = []

    def flipper():
        for n in range(flips):
            time.sleep(seconds / (flips + 1))
            registry.set_champion(versions[n % 2], "bench", f"flip {n}")
            done.append(time.monotonic())

    t = threading.Thread(target=flipper)
    t.start()
    result = wrk(f"{url}/recommend", script, 8, seconds)
    t.join()
    registry.set_champion(versions[1], "bench", "back")  # flips ended on versions[0] when even: restore
    return {**result, "pointer_moves": len(done)}


def with_slow_clients(url: str, script: Path, n: int, seconds: float) -> dict:
    base = wrk(f"{url}/recommend", script, 8, seconds)
    port = url.rsplit(":", 1)[1]
    stop_flag, socks = threading.Event(), []

    def holder():  # keeps n connections open, each trickling a header byte now and then (re-opened if cut)
        while not stop_flag.is_set():
            while len(socks) < n:
                s = socket.create_connection(("127.0.0.1", int(port)))
                s.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\n")
                socks.append(s)
            for s in list(socks):
                try:
                    s.sendall(b"X")
                except OSError:
                    socks.remove(s)
                    s.close()
            stop_flag.wait(0.5)

    t = threading.Thread(target=holder)
    t.start()
    time.sleep(1)
    try:
        loaded = wrk(f"{url}/recommend", script, 8, seconds)
    finally:
        stop_flag.set()
        t.join()
        for s in socks:
            s.close()
    return {
        "slow_connections": n,
        "unloaded": base,
        "loaded": loaded,
        "p99_ratio": round(loaded["p99_ms"] / base["p99_ms"], 2),
    }


CONFIGS = {  # what serve/ could do, measured before adopting (docs/BENCHMARKS.md)
    "1 worker, 1 ORT thread": (1, ["--threads", "1", "--batching", "off"]),
    "1 worker, 2 ORT threads": (1, ["--threads", "2", "--batching", "off"]),
    "2 workers, 1 ORT thread": (2, ["--threads", "1", "--batching", "off"]),
    "2 workers, 1 thread, batching, no wait": (2, ["--threads", "1", "--batch-wait-ms", "0"]),
    "2 workers, 1 thread, batching, 1 ms wait": (2, ["--threads", "1", "--batch-wait-ms", "1"]),
    "2 workers, 1 thread, batching, 3 ms wait": (2, ["--threads", "1", "--batch-wait-ms", "3"]),
}


STACKS = {  # uvicorn's event loop and HTTP parser under the same app, 2 workers (serve/server.py: uvloop, httptools)
    "uvloop + httptools (as served)": ("uvloop", "httptools"),
    "asyncio + httptools": ("asyncio", "httptools"),
    "uvloop + h11": ("uvloop", "h11"),
    "asyncio + h11": ("asyncio", "h11"),
}
STACK_LAUNCHER = """
import sys
from serve.config import ServeConfig
from serve.server import GuardedHttpTools, run
loop, http = sys.argv[1], sys.argv[2]
run(ServeConfig.from_env(), loop=loop, http=GuardedHttpTools if http == "httptools" else http)
"""


def start_stack(bucket: str, tmp: Path, env: dict, loop: str, http: str, workers: int = 2):
    """`python -m serve`'s server (serve/server.py `run`, its limits and workers) with another event loop or
    HTTP parser: the same config as `start_freshrec`'s defaults."""
    from serve.config import ServeConfig

    port = free_port()
    log = tmp / f"stack-{port}.log"
    config = ServeConfig(port=port, workers=workers, bucket=bucket, poll=0.2, cache_dir=str(tmp / f"cache-{port}"))
    proc = subprocess.Popen(
        [sys.executable, "-c", STACK_LAUNCHER, loop, http], env={**env, **config.to_env()}, stdout=log.open("wb"),
        stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/readyz", 120, proc, log)
    return proc, f"http://127.0.0.1:{port}"


def compare_configs(bucket: str, script: Path, tmp: Path, env: dict, connections: list[int], seconds: float,
                    repeats: int, names: list[str]) -> list[dict]:  # fmt: skip
    """freshrec itself under each of CONFIGS (or STACKS): median req/s and p99 over `repeats` rounds (configs
    in turn)."""
    runs = []
    for rep in range(repeats):
        for name in names:
            if name in STACKS:
                proc, url = start_stack(bucket, tmp, env, *STACKS[name])
            else:
                workers, flags = CONFIGS[name]
                proc, url = start_freshrec(bucket, workers, tmp, env, *flags)
            try:
                wrk(f"{url}/recommend", script, 8, 2)  # warm
                for c in connections:
                    runs.append({"config": name, "repeat": rep, **wrk(f"{url}/recommend", script, c, seconds)})
                    print(f"[config] {runs[-1]}", flush=True)
            finally:
                stop(proc)
    rows = []
    for name in names:
        for c in connections:
            mine = [r for r in runs if r["config"] == name and r["connections"] == c]
            medians = {m: round(statistics.median(r[m] for r in mine), 3) for m in ("rps", "p50_ms", "p99_ms")}
            rows.append({"config": name, "connections": c, "errors": sum(r["errors"] for r in mine), **medians})
    return rows


def summarize(runs: list[dict], targets: list[str], connections: list[int], repeats: int) -> tuple[list, dict]:
    """Medians over repeats per (target, connections), and freshrec/peer req/s as the median of the
    ratios measured within each repeat."""
    rows = []
    for name in targets:
        for c in connections:
            mine = [r for r in runs if r["target"] == name and r["connections"] == c]
            medians = {
                m: round(statistics.median(r[m] for r in mine), 3) for m in ("rps", "p50_ms", "p90_ms", "p99_ms")
            }
            rows.append({"target": name, "connections": c, **medians, "errors": sum(r["errors"] for r in mine)})
    ratios = {}
    if len(targets) == 2:
        rps = {(r["target"], r["connections"], r["repeat"]): r["rps"] for r in runs}
        for c in connections:
            per = [rps[(targets[0], c, k)] / rps[(targets[1], c, k)] for k in range(repeats)]
            ratios[f"rps {targets[0]}/{targets[1]} at {c}"] = round(statistics.median(per), 2)
    return rows, ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", type=Path, default=ROOT / ".run" / "demo", help="a `make run` state")
    ap.add_argument("--s3-port", type=int, default=8333)
    ap.add_argument("--ml1m", action="store_true", help="also the ML-1M-sized model")
    ap.add_argument("--connections", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--config-connections", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--peer", choices=["bentoml", "none"], default="bentoml")
    ap.add_argument("--flips", type=int, default=10)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--configs", action="store_true", help="first compare serve/ configurations (CONFIGS)")
    ap.add_argument("--configs-only", action="store_true", help="compare the configurations, nothing else")
    ap.add_argument("--config-repeats", type=int, default=2)
    ap.add_argument("--config-names", nargs="+", help="only these of CONFIGS (default: all)")
    ap.add_argument("--stacks", action="store_true", help="compare uvicorn's loops and parsers (STACKS) instead")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/serve_load.py drives the servers with wrk: install it (Debian: apt-get install wrk)")

    from tasks.common import git_commit
    from tasks.registry import Registry
    from tasks.s3 import LocalS3, client

    s3_server = LocalS3(args.state.resolve() / "s3", args.s3_port)
    if not (args.state / "s3").exists():
        raise SystemExit(f"no make-run state in {args.state}: run `make run` first")
    started = not s3_server.running()
    s3_server.start()
    env = {**os.environ, **s3_server.env()}
    os.environ.update(s3_server.env())
    s3 = client()
    tmp = Path(tempfile.mkdtemp(prefix="freshrec-serve-load-"))
    report = {"command": " ".join(sys.argv), "git_commit": git_commit(), "machine": {
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}, "workers": args.workers,
        "seconds": args.seconds, "repeats": args.repeats, "peer": args.peer, "models": {}}  # fmt: skip
    try:
        models = {"make-run champion": ("bench-serve-demo", lambda b: demo_model(s3, Registry, b, "freshrec", tmp))}
        if args.ml1m:
            models["ML-1M-sized"] = ("bench-serve-ml1m", lambda b: ml1m(s3, Registry, b))
        for label, (bucket, make) in models.items():
            version, histories = make(bucket)
            registry = Registry(s3, bucket, "seqrec")
            pointer = registry.pointer()[0]
            bodies = [json.dumps({"history": h, "k": 10}).encode() for h in histories]
            script = lua_script(bodies, tmp / f"{bucket}.lua")
            if args.configs or args.configs_only:
                configs = compare_configs(
                    bucket,
                    script,
                    tmp,
                    env,
                    args.config_connections,
                    args.seconds,
                    args.config_repeats,
                    args.config_names or list(STACKS if args.stacks else CONFIGS),
                )
                report.setdefault("configs", {})[label] = configs
                print(f"{'config':<40} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
                for r in configs:
                    line = f"{r['config']:<40} {r['connections']:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.2f}"
                    print(f"{line} {r['p99_ms']:>8.2f}")
                if args.configs_only:
                    continue
            fr, fr_url = start_freshrec(bucket, args.workers, tmp, env)
            peer = peer_url = None
            try:
                if args.peer == "bentoml":
                    folder = tmp / f"peer-{bucket}"
                    registry.download(version, folder, [pointer["serve_file"], "items.json", "config.json"])
                    peer, peer_url = start_peer(folder, pointer["serve_file"], args.workers, tmp)
                targets = {"freshrec": fr_url} | ({"bentoml": peer_url} if peer_url else {})
                for url in targets.values():  # warm both
                    wrk(f"{url}/recommend", script, 8, 2)
                runs: list[dict] = []
                for rep in range(args.repeats):
                    for c in args.connections:
                        for name in list(targets) if rep % 2 == 0 else list(targets)[::-1]:
                            runs.append(
                                {
                                    "target": name,
                                    "repeat": rep,
                                    **wrk(f"{targets[name]}/recommend", script, c, args.seconds),
                                }
                            )
                            print(f"[{label}] {runs[-1]}", flush=True)
                rows, ratios = summarize(runs, list(targets), args.connections, args.repeats)
            finally:
                if peer is not None:
                    stop(peer)
            try:
                flip_to = second_version(registry, tmp)
                flips = with_flips(fr_url, script, registry, [flip_to, version], args.flips, max(20, args.seconds))
                slow = with_slow_clients(fr_url, script, args.slow, args.seconds)
                with urllib.request.urlopen(f"{fr_url}/metrics") as resp:  # noqa: S310 - loopback
                    reloads = re.findall(
                        r'freshrec_serve_reloads_total\{outcome="(\w+)"\} ([\d.]+)', resp.read().decode()
                    )
            finally:
                stop(fr)
            report["models"][label] = {"version": version, "serve_file": pointer["serve_file"], "rows": rows,
                                       "ratios_within_repeat_median": ratios, "pointer_flips": flips,
                                       "slow_clients": slow, "reloads": dict(reloads)}  # fmt: skip
            print(f"\n{label}: {version} ({pointer['serve_file']}), {args.workers} workers, wrk -t1, "
                  f"median of {args.repeats} x {args.seconds:g} s")  # fmt: skip
            print(f"{'target':<10} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>7}")
            for r in rows:
                print(f"{r['target']:<10} {r['connections']:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} "
                      f"{r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7}")  # fmt: skip
            print("ratios (median of per-repeat ratios):", json.dumps(ratios))
            print(f"pointer moved {flips['pointer_moves']} times during {max(20, args.seconds):g} s at 8 connections: "
                  f"{flips['requests']} requests, {flips['errors']} errors, p99 {flips['p99_ms']:.2f} ms")  # fmt: skip
            print(f"{args.slow} slow connections held: p99 {slow['loaded']['p99_ms']:.2f} ms vs "
                  f"{slow['unloaded']['p99_ms']:.2f} ms without (x{slow['p99_ratio']})")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if started:
            s3_server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
