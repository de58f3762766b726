"""python-quickbooks with a plain COPY loader: the peer of `cargo xtask bench peers` that a
team would write in an afternoon.

For each entity it pages `SELECT * FROM <Entity> STARTPOSITION n MAXRESULTS 1000` through
python-quickbooks' client (the statement `<Entity>.all()` sends, without building objects)
until a short page, and COPYs each page's records as (id, payload jsonb) into
pyqb.<entity> with psycopg2. No windows, no COUNT check, no Active filter: what the plain
loop reads is what it stores.

Configuration from the environment (written by the bench): QBO_CLIENT_ID,
QBO_CLIENT_SECRET, QBO_REFRESH_TOKEN, QBO_REALM_ID, QBO_BASE_URL (the API root; the
library's `api_url_v3` is set to QBO_BASE_URL + /v3), QBO_DISCOVERY_URL (Intuit's OAuth
discovery document, which intuit-oauth takes as its `environment`), DATABASE_URL,
PEERS_ENTITIES (comma-separated, default Customer,Invoice).
"""

import io
import json
import os
import sys

import psycopg2
from intuitlib.client import AuthClient
from quickbooks import QuickBooks

PAGE = 1000


def main():
    env = os.environ
    auth = AuthClient(
        client_id=env["QBO_CLIENT_ID"],
        client_secret=env["QBO_CLIENT_SECRET"],
        redirect_uri="http://127.0.0.1/unused",
        environment=env["QBO_DISCOVERY_URL"],
    )
    qb = QuickBooks(
        auth_client=auth,
        refresh_token=env["QBO_REFRESH_TOKEN"],
        company_id=env["QBO_REALM_ID"],
        minorversion=75,
    )
    qb.api_url_v3 = env["QBO_BASE_URL"].rstrip("/") + "/v3"
    entities = env.get("PEERS_ENTITIES", "Customer,Invoice").split(",")
    conn = psycopg2.connect(env["DATABASE_URL"])
    with conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS pyqb")
        for e in entities:
            cur.execute(
                f'CREATE TABLE IF NOT EXISTS pyqb."{e.lower()}" (id text NOT NULL, payload jsonb NOT NULL)'
            )
    for e in entities:
        start, total = 1, 0
        while True:
            resp = qb.query(f"SELECT * FROM {e} STARTPOSITION {start} MAXRESULTS {PAGE}")
            rows = resp.get("QueryResponse", {}).get(e, [])
            if rows:
                buf = io.StringIO()
                for r in rows:
                    payload = json.dumps(r, ensure_ascii=False, separators=(",", ":"))
                    # COPY text format: escape the backslash, then the control characters.
                    payload = (
                        payload.replace("\\", "\\\\")
                        .replace("\n", "\\n")
                        .replace("\r", "\\r")
                        .replace("\t", "\\t")
                    )
                    buf.write(f"{r['Id']}\t{payload}\n")
                buf.seek(0)
                with conn, conn.cursor() as cur:
                    cur.copy_expert(f'COPY pyqb."{e.lower()}" (id, payload) FROM STDIN', buf)
            total += len(rows)
            if len(rows) < PAGE:
                break
            start += PAGE
        print(f"{e}: {total} rows", file=sys.stderr)
    conn.close()


if __name__ == "__main__":
    main()
