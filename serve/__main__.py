"""`python -m serve`: an ONNX Runtime recommendation service that follows the champion pointer.

python -m serve --once            load the champion, print one recommendation, exit
python -m serve --port 8000       HTTP on 127.0.0.1: POST /recommend {"history": [...]},
                                  GET /healthz; re-reads the pointer every --poll seconds
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serve.champion import ChampionFollower


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--once", action="store_true")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--poll", type=float, default=30.0, help="seconds between pointer checks")
    args = ap.parse_args(argv)
    from tasks.params import load_params
    from tasks.registry import registry_from_env

    follower = ChampionFollower(registry_from_env(load_params()))
    if not follower.refresh() and follower.current is None:
        raise SystemExit("no champion in the registry yet: run the bootstrap first (`python -m tasks.bootstrap`)")
    if args.once:
        history = follower.current.item_ids[:5]
        recs = follower.recommend(history)
        pointer, _ = follower.registry.pointer()
        print(
            f"champion {pointer['version']} (approved by {pointer['approver']}, serving {pointer['serve_file']},"
            f" sha256-verified)"
        )
        print(f"after {history}: {[r[0] for r in recs]}")
        return

    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(args.poll):
            try:
                follower.refresh()
            except Exception:  # keep serving the current model; the next poll retries
                logging.exception("pointer refresh failed; still serving %s", follower.current.version)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, {"version": follower.current.version})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/recommend":
                self._send(404, {"error": "not found"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                history = [str(i) for i in body["history"]]
            except (ValueError, KeyError, TypeError):
                self._send(400, {"error": 'send JSON {"history": ["item id", ...]} (oldest first)'})
                return
            recs = follower.recommend(history)
            self._send(200, {"version": follower.current.version, "items": recs})

    threading.Thread(target=poll, daemon=True).start()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    logging.info("serving on http://%s:%d", args.host, args.port)
    try:
        server.serve_forever()
    finally:
        stop.set()


if __name__ == "__main__":
    main()
