#!/usr/bin/env python3
"""Sets the qb-backfill Mage Secrets without Mage's UI, from files or from the environment.

    python set_secrets.py PROJECT_PATH --from-dir /run/secrets   # a file per secret name
    python set_secrets.py PROJECT_PATH --from-env                # QBO_CLIENT_SECRET=..., or ..._FILE
    python set_secrets.py PROJECT_PATH --file qbo_refresh_token=/path/to/file

Run it with the Python that has mage-ai installed, with the same MAGE_DATA_DIR as the Mage
that runs the pipelines (Secrets live in Mage's database, encrypted with a key under its data
directory). A secret already set is replaced. The known names are those the blocks read
(qb_backfill/utils/qb_runner.py, SECRETS); `--file` also takes other names. Only names are
ever printed, never a value.
"""

import argparse
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from qb_backfill.utils.qb_runner import SECRETS  # noqa: E402


def _read(path):
    with open(path, 'r', encoding='utf-8') as f:
        # A file written by `echo` ends in a newline that is no part of the secret.
        return f.read().rstrip('\r\n')


def collect(args, environ):
    """(name, value) pairs to set, in a stable order; values are never printed."""
    found = {}
    if args.from_dir:
        for name in SECRETS:
            path = os.path.join(args.from_dir, name)
            if os.path.isfile(path):
                found[name] = _read(path)
    if args.from_env:
        for name, var in SECRETS.items():
            if environ.get(var):
                found[name] = environ[var]
            elif environ.get(var + '_FILE'):
                found[name] = _read(environ[var + '_FILE'])
    for spec in args.file or []:
        name, sep, path = spec.partition('=')
        if not sep or not name or not path:
            raise SystemExit(f'set_secrets: --file wants NAME=PATH, not {spec!r}')
        found[name] = _read(path)
    empty = [n for n, v in found.items() if not v]
    if empty:
        raise SystemExit(f'set_secrets: empty secret(s): {", ".join(sorted(empty))}')
    return sorted(found.items())


def main(argv=None):
    p = argparse.ArgumentParser(description='Set Mage Secrets for the qb-backfill pipelines.')
    p.add_argument('project', help='path of the Mage project (qb_backfill/)')
    p.add_argument('--from-dir', help='a directory holding one file per secret name')
    p.add_argument('--from-env', action='store_true',
                   help='read QBO_CLIENT_SECRET, DATABASE_URL, ... (or their _FILE variants)')
    p.add_argument('--file', action='append', metavar='NAME=PATH', help='one secret from a file')
    args = p.parse_args(argv)
    pairs = collect(args, os.environ)
    if not pairs:
        print('set_secrets: no secret found to set', file=sys.stderr)
        return 1

    project = os.path.abspath(args.project)
    from mage_ai.settings.repo import set_repo_path

    set_repo_path(project)
    sys.path.append(os.path.dirname(project))
    from mage_ai.data_preparation.models.project import Project
    from mage_ai.data_preparation.shared.secrets import create_secret
    from mage_ai.orchestration.db import db_connection
    from mage_ai.orchestration.db.models.secrets import Secret

    from mage_ai.orchestration.db.database_manager import database_manager

    # A Mage database nobody started a server on yet has no tables: create them (idempotent,
    # what `mage start` does first).
    database_manager.run_migrations(log_level=logging.ERROR)
    db_connection.start_session()
    repo_names = Project().repo_path_for_database_query('secrets')
    for name, value in pairs:
        # Replace, not add: Mage would keep both rows and read either. (Mage 0.9.80's own
        # delete_secret fails on its legacy branch, hence the query here.)
        for old in Secret.query.filter(Secret.name == name, Secret.repo_name.in_(repo_names)):
            old.delete()
        create_secret(name, value)
    db_connection.session.commit()
    print('set_secrets: set ' + ', '.join(n for n, _ in pairs))
    return 0


if __name__ == '__main__':
    sys.exit(main())
