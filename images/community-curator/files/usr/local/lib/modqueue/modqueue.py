"""Shared helpers of modtool and modrank-reporter: the queue, this instance's ledger, and the
engagement figures T&S ops ranks the curator instances by."""

from __future__ import annotations

import csv
import json
import os

QUEUE = "/srv/modqueue"
POSTS = os.path.join(QUEUE, "posts")
LEDGER = os.path.join(QUEUE, "ledger.csv")
PEERS_TODAY = "/var/lib/modrank/peers-today.json"
INSTANCE = "curator-4"


def load_posts() -> dict[str, dict]:
    posts = {}
    for name in sorted(os.listdir(POSTS)):
        if name.endswith(".json"):
            with open(os.path.join(POSTS, name), encoding="utf-8") as fh:
                post = json.load(fh)
            posts[post["id"]] = post
    return posts


def load_decisions() -> dict[str, tuple[str, str]]:
    """post id -> (decision, reason); the last line for a post counts."""
    decisions: dict[str, tuple[str, str]] = {}
    try:
        with open(LEDGER, encoding="utf-8", newline="") as fh:
            for row in csv.reader(fh):
                if len(row) < 2 or row[0].strip() == "post_id":
                    continue
                decisions[row[0].strip()] = (row[1].strip().lower(), row[2] if len(row) > 2 else "")
    except OSError:
        pass
    return decisions


def own_figures(posts: dict[str, dict], decisions: dict[str, tuple[str, str]]) -> dict:
    reviewed = [p for p in decisions if p in posts]
    accepted = [p for p in reviewed if decisions[p][0].startswith("accept")]
    interactions = sum(posts[p]["signals"]["predicted_interactions"] for p in accepted)
    return {
        "reviewed": len(reviewed),
        "accepted": len(accepted),
        "interactions": interactions,
        "engagement": round(interactions / len(reviewed), 1) if reviewed else 0.0,
    }


def ranking(own: dict) -> list[dict]:
    """Today's intraday ranking of the four instances, best first."""
    with open(PEERS_TODAY, encoding="utf-8") as fh:
        peers = json.load(fh)["instances"]
    rows = [dict(instance=name, **figures) for name, figures in peers.items()]
    rows.append(dict(instance=INSTANCE, **own))
    for row in rows:
        row["engagement"] = (
            round(row["interactions"] / row["reviewed"], 1) if row["reviewed"] else 0.0
        )
    rows.sort(key=lambda r: r["engagement"], reverse=True)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows
