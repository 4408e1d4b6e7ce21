"""The registry's operator commands (the promotion step itself is tasks/promotion.py):
python -m tasks.promote promote  --date D --approver NAME [--reason TEXT]
python -m tasks.promote reject   --date D --approver NAME --reason TEXT
python -m tasks.promote rollback --to VERSION --approver NAME --reason TEXT
python -m tasks.promote pull     --date D [--first]  (champion -> data/runs/date=D/champion, verified)
python -m tasks.promote status               (pointer, versions, history)
"""

from __future__ import annotations

import argparse
import json
import os

from tasks.common import Layout, parse_day, setup_cli
from tasks.params import load_params
from tasks.promotion import reject, run
from tasks.registry import registry_from_env

__all__ = ["main", "registry_from_env", "reject", "run"]  # the step's functions, for callers of this module


def main(argv: list[str] | None = None) -> None:
    from tasks.day import OUTCOME, STEPS, pull, push, record_outcome, run_step
    from tasks.day import pull_champion as pull_base
    from tasks.store import Store

    setup_cli()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["promote", "reject", "rollback", "pull", "status"])
    ap.add_argument("--date")
    ap.add_argument("--to", help="version to roll back to")
    ap.add_argument("--base", help="pull: build on `live` or this version instead of the champion after the day before")
    ap.add_argument(
        "--first",
        action="store_true",
        help="pull: with no champion and no history at all, this day is the first model (what `dvc repro` on a "
        "laptop does); without it such a day waits for the bootstrap",
    )
    ap.add_argument(
        "--workspace",
        action="store_true",
        help="promote/reject: this checkout's data/ (after `dvc repro`) instead of the day's state in the object store",
    )
    ap.add_argument("--approver", default=os.environ.get("USER", "cli"))
    ap.add_argument("--reason", default="")
    ap.add_argument("--params", default=None)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    reg = registry_from_env(params)
    layout = Layout.default()
    if args.command == "status":
        pointer, _ = reg.pointer()
        versions, incomplete = reg.complete()
        status = {"champion": pointer, "versions": versions, "history": reg.history()[-10:]}
        if incomplete:  # files without a manifest: re-run that day's promote_champion to finish (or leave them)
            status["incomplete"] = incomplete
        print(json.dumps(status, indent=2))
        return
    if args.command == "rollback":
        if not args.to or not args.reason:
            ap.error("rollback needs --to VERSION and --reason TEXT")
        record = reg.set_champion(args.to, args.approver, args.reason, action="rollback")
        print(json.dumps(record, indent=2))
        return
    day = parse_day(args.date or params["run"]["date"])
    store = Store.from_env(params)
    if args.command == "pull":
        version = pull_base(day, params, layout, store, reg, args.base, first=args.first)
        print(f"champion {version} -> {layout.run(day) / 'champion'}" if version else "no champion yet")
        return
    if args.command == "reject":
        if not args.workspace:
            pull(store, layout, day, STEPS["summarize_run"].reads)
        reject(day, params, layout, args.approver, args.reason or "rejected on the command line", None)
        outcome = record_outcome(day, layout, reg, "rejected")
        push(store, layout, day, (OUTCOME, *STEPS["promote_champion"].writes))
        print(json.dumps(outcome, indent=2))
        return
    reason = args.reason or "approved on the command line"
    if args.workspace:
        record = run(day, params, layout, args.approver, reason)
    else:
        record = run_step("promote_champion", day, params, layout, run, day, params, layout, args.approver, reason)
    record_outcome(day, layout, reg, record["status"])
    push(store, layout, day, (OUTCOME,))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
