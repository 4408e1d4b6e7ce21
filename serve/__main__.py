"""`python -m serve`: the recommendation service, following the champion pointer (docs/serving.md).

python -m serve                      HTTP on 127.0.0.1:8000 (see --help for limits, workers, auth)
python -m serve --once               load the champion, print one recommendation, exit

The registry's endpoint, bucket and credentials come from the environment (FRESHREC_S3_ENDPOINT,
FRESHREC_BUCKET, AWS_*), as for every freshrec process.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from serve.config import ConfigError, ServeConfig


def _on_off(text: str) -> bool:
    if text.lower() not in ("on", "off", "true", "false", "1", "0"):
        raise argparse.ArgumentTypeError(f"say on or off, not {text!r}")
    return text.lower() in ("on", "true", "1")


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, ServeConfig]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--once", action="store_true", help="load the champion, print one recommendation, exit")
    defaults = ServeConfig()
    helps = {
        "host": "listen address (0.0.0.0 inside a container; 127.0.0.1 otherwise)",
        "workers": "worker processes (one per core)",
        "threads": "ONNX Runtime threads per worker",
        "poll": "seconds between champion pointer reads",
        "stale_polls": "not ready after this many polls without a successful pointer read",
        "max_body": "largest request body in bytes (413 above)",
        "header_timeout": "seconds a client has to send a request's headers (408)",
        "read_timeout": "seconds a request body may take to arrive (408)",
        "max_connections": "open connections per worker (503 above)",
        "drain_timeout": "seconds in-flight requests get to finish after SIGTERM",
        "cache_dir": "where versions are downloaded (default: a temporary folder)",
        "token_file": "require `Authorization: Bearer <the file's content>` on /recommend* (file must be 0600)",
        "bucket": "the registry bucket (default: $FRESHREC_BUCKET, else params' promote.bucket)",
        "batching": "score concurrent /recommend requests in one model call: on | off",
        "batch_wait_ms": "with batching, how long an idle model waits for batch-mates (0: not at all)",
        "batch_rows": "rows per micro-batch",
    }
    for f in dataclasses.fields(ServeConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = {int: int, float: float, bool: _on_off}.get(type(getattr(defaults, f.name)), str)
        ap.add_argument(flag, type=kind, default=getattr(defaults, f.name), help=helps.get(f.name, " "))
    args = ap.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ServeConfig)}
    try:
        return args, ServeConfig(**values)
    except ConfigError as exc:
        ap.error(str(exc))


def once(config: ServeConfig) -> None:
    from serve.app import create_app

    app = create_app(config)
    follower = app.state.service.follower
    follower.poll()
    if follower.current is None:
        raise SystemExit(f"nothing to serve: {follower.last_error}")
    model = follower.current
    history = model.items[:5]
    scores, idx = model.score(model.encode([history]).inputs)
    print(f"champion {model.version} (serving {model.serve_file}, sha256-verified, manifest "
          f"{(model.manifest_sha256 or '?')[:12]}…)")  # fmt: skip
    print(f"after {history}: {[item for item, _ in model.top(scores[0], idx[0], 10, set(history))]}")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args, config = parse(argv)
    try:
        if args.once:
            once(config)
        else:
            from serve.server import run

            run(config)
    except ConfigError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
