"""dlt's rest_api source pointed at a QBO company, loading into PostgreSQL: a peer of
`cargo xtask bench peers`.

The configuration is dlt's own: the base URL, an OAuth2ClientCredentials authenticator whose
token request carries QBO's refresh-token grant (dlt's `access_token_request_data`, the
client id and secret in the form body), and, because QBO pages through STARTPOSITION inside
the query text rather than through request parameters, a small paginator of ours on dlt's
BasePaginator (its documented extension point). Each resource queries
`SELECT * FROM <Entity>` 1,000 at a time, with no Active filter, as a first configuration
would. dlt's defaults otherwise (nested lists become child tables).

Configuration from the environment (written by the bench): QBO_BASE_URL, QBO_TOKEN_URL,
QBO_CLIENT_ID, QBO_CLIENT_SECRET, QBO_REFRESH_TOKEN, QBO_REALM_ID, DATABASE_URL,
DLT_PIPELINES_DIR (dlt's local state, under target/), PEERS_ENTITIES (default
Customer,Invoice).
"""

import os
import sys
from urllib.parse import urlsplit, urlunsplit

import dlt
from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from dlt.sources.rest_api import rest_api_source

PAGE = 1000


class QboPaginator(BasePaginator):
    """STARTPOSITION n MAXRESULTS 1000 appended to the query; stops after a short page."""

    def __init__(self, select):
        super().__init__()
        self.select = select
        self.start = 1

    def init_request(self, request):
        request.params["query"] = f"{self.select} STARTPOSITION {self.start} MAXRESULTS {PAGE}"

    def update_state(self, response, data=None):
        if data is None or len(data) < PAGE:
            self._has_next_page = False
        else:
            self.start += PAGE

    def update_request(self, request):
        request.params["query"] = f"{self.select} STARTPOSITION {self.start} MAXRESULTS {PAGE}"


def with_password(url):
    """dlt insists on a password; a trust-authenticated cluster ignores this placeholder."""
    u = urlsplit(url)
    if u.password is not None or "@" not in u.netloc:
        return url
    user, host = u.netloc.rsplit("@", 1)
    return urlunsplit(u._replace(netloc=f"{user}:unused@{host}"))


def main():
    env = os.environ
    entities = env.get("PEERS_ENTITIES", "Customer,Invoice").split(",")
    base = env["QBO_BASE_URL"].rstrip("/")
    auth = OAuth2ClientCredentials(
        access_token_url=env["QBO_TOKEN_URL"],
        client_id=env["QBO_CLIENT_ID"],
        client_secret=env["QBO_CLIENT_SECRET"],
        access_token_request_data={
            "grant_type": "refresh_token",
            "refresh_token": env["QBO_REFRESH_TOKEN"],
        },
    )
    resources = []
    for e in entities:
        resources.append(
            {
                "name": e.lower(),
                "primary_key": "Id",
                "write_disposition": "replace",
                "endpoint": {
                    "path": "query",
                    "params": {"minorversion": "75"},
                    "data_selector": f"QueryResponse.{e}",
                    "paginator": QboPaginator(f"SELECT * FROM {e}"),
                },
            }
        )
    source = rest_api_source(
        {
            "client": {
                "base_url": f"{base}/v3/company/{env['QBO_REALM_ID']}/",
                "auth": auth,
                "headers": {"Accept": "application/json"},
            },
            "resources": resources,
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="qbo_peers",
        pipelines_dir=env["DLT_PIPELINES_DIR"],
        destination=dlt.destinations.postgres(credentials=with_password(env["DATABASE_URL"])),
        dataset_name="dlt_qbo",
        progress="log",
    )
    info = pipeline.run(source)
    print(info, file=sys.stderr)


if __name__ == "__main__":
    main()
