"""Airbyte's QuickBooks source through PyAirbyte into a PostgreSQL cache: a peer of
`cargo xtask bench peers`.

The connector (airbyte-source-quickbooks, its own venv) runs as PyAirbyte's local
executable with its shipped manifest; the config is the connector's spec (client id and
secret, refresh token, realm, start date, sandbox false). Its manifest fixes the API base
(https://quickbooks.api.intuit.com) and the token URL (https://oauth.platform.intuit.com/...)
with no setting for either, so the bench runs it behind intuit_proxy.py (HTTPS_PROXY and
REQUESTS_CA_BUNDLE, set by the bench).

Configuration from the environment: AIRBYTE_SOURCE_EXE, QBO_CLIENT_ID, QBO_CLIENT_SECRET,
QBO_REFRESH_TOKEN, QBO_REALM_ID, PEERS_START_DATE, DATABASE_URL, PEERS_STREAMS (default
customers,invoices).
"""

import os
import sys
from urllib.parse import urlsplit

import airbyte as ab
from airbyte.caches import PostgresCache


def main():
    env = os.environ
    source = ab.get_source(
        "source-quickbooks",
        config={
            "auth_type": "oauth2.0",
            "client_id": env["QBO_CLIENT_ID"],
            "client_secret": env["QBO_CLIENT_SECRET"],
            "refresh_token": env["QBO_REFRESH_TOKEN"],
            "realm_id": env["QBO_REALM_ID"],
            # Required by the spec; an expired token makes the connector refresh first.
            "access_token": "expired",
            "token_expiry_date": "2000-01-01T00:00:00+00:00",
            "start_date": env["PEERS_START_DATE"],
            "sandbox": False,
        },
        local_executable=env["AIRBYTE_SOURCE_EXE"],
    )
    source.select_streams(env.get("PEERS_STREAMS", "customers,invoices").split(","))
    u = urlsplit(env["DATABASE_URL"])
    cache = PostgresCache(
        host=u.hostname,
        port=u.port or 5432,
        username=u.username or "postgres",
        password=u.password or "unused",
        database=u.path.lstrip("/"),
        schema_name="airbyte",
    )
    result = source.read(cache=cache)
    for name, ds in result.streams.items():
        print(f"{name}: {len(ds)} records", file=sys.stderr)


if __name__ == "__main__":
    main()
