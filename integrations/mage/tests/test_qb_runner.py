"""Unit tests of qb_runner without Mage: variables, environment, relayed lines, exit codes.

Run with any Python 3: ``python -m unittest discover -s integrations/mage/tests`` (the
end-to-end check with Mage itself is ``cargo xtask mage``).
"""

import os
import stat
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from qb_backfill.utils import qb_runner  # noqa: E402
from qb_backfill.utils.qb_runner import BackfillFailed  # noqa: E402


class Recorder:
    """A Mage-like logger keeping (level, message) pairs."""

    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        return lambda message: self.lines.append((level, message))


def fake_binary(directory, name, script):
    """An executable `name` in `directory` running the shell `script`."""
    path = os.path.join(directory, name)
    with open(path, 'w', encoding='utf-8') as f:
        f.write('#!/bin/sh\n' + script + '\n')
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


class CommandLine(unittest.TestCase):
    def test_range_and_options(self):
        args = qb_runner.command_line('qb-items-backfill', {
            'fecha_inicio': '2024-01-01', 'fecha_fin': '2024-02-01',
            'trigger': 'items_jan', 'force': 'true',
        })
        self.assertEqual(args, [
            'qb-items-backfill', '--fecha-inicio', '2024-01-01', '--fecha-fin', '2024-02-01',
            '--trigger', 'items_jan', '--force',
        ])
        args = qb_runner.command_line('b', {'fecha_inicio': '1', 'fecha_fin': '2', 'force': False})
        self.assertNotIn('--force', args)
        self.assertNotIn('--trigger', args)

    def test_a_missing_or_blank_range_fails_naming_it(self):
        for variables, name in [({'fecha_fin': '2024-02-01'}, 'fecha_inicio'),
                                ({'fecha_inicio': '2024-01-01', 'fecha_fin': '  '}, 'fecha_fin')]:
            with self.assertRaises(BackfillFailed) as e:
                qb_runner.command_line('b', variables)
            self.assertIn(f'`{name}` is missing', str(e.exception))

    def test_force_must_be_a_boolean(self):
        with self.assertRaises(BackfillFailed):
            qb_runner.command_line('b', {'fecha_inicio': '1', 'fecha_fin': '2', 'force': 'maybe'})


class Environment(unittest.TestCase):
    def test_secrets_overlay_and_the_range_is_not_inherited(self):
        secrets = {'qbo_client_secret': 'cs-value', 'database_url': 'postgres://x'}
        env = qb_runner.child_environment(
            secrets.get, {'PATH': '/bin', 'FECHA_INICIO': '2020-01-01', 'QBO_ENV': 'sandbox',
                          'QBO_CLIENT_SECRET': 'from-mage-env'})
        self.assertEqual(env['QBO_CLIENT_SECRET'], 'cs-value')
        self.assertEqual(env['DATABASE_URL'], 'postgres://x')
        self.assertEqual(env['QBO_ENV'], 'sandbox')
        self.assertNotIn('FECHA_INICIO', env)
        self.assertNotIn('QBO_REFRESH_TOKEN', env)


class Relay(unittest.TestCase):
    def test_json_lines_keep_their_level_and_secrets_are_masked(self):
        log = Recorder()
        line = ('{"timestamp":"t","level":"WARN","message":"window_failed","rows":3,'
                '"log.file":"x.rs","token":"s3cr3t-token"}')
        self.assertEqual(qb_runner.relay_line(log, line, ['s3cr3t-token']), 'warning')
        self.assertEqual(log.lines, [('warning', 'window_failed rows=3 token=******')])
        self.assertEqual(qb_runner.relay_line(log, 'plain text'), 'error')


class Run(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.base = {'PATH': '/usr/bin:/bin', 'QB_BIN_DIR': self.dir.name}
        self.vars = {'fecha_inicio': '2024-01-01', 'fecha_fin': '2024-02-01'}

    def tearDown(self):
        self.dir.cleanup()

    def run_with(self, script, secrets=None):
        fake_binary(self.dir.name, 'qb-items-backfill', script)
        log = Recorder()
        variables = dict(self.vars, logger=log)
        return log, lambda: qb_runner.run_backfill(
            'qb-items-backfill', variables, (secrets or {}).get, self.base)

    def test_success_relays_and_passes_secrets_by_environment_only(self):
        log, run = self.run_with(
            'echo "{\\"level\\":\\"INFO\\",\\"message\\":\\"pipeline_finished\\",\\"args\\":\\"$*\\"}" >&2\n'
            '[ "$QBO_REFRESH_TOKEN" = "rt-123456" ] || exit 3',
            {'qbo_refresh_token': 'rt-123456'})
        self.assertEqual(run(), {'exit_code': 0, 'outcome': 'succeeded'})
        text = repr(log.lines)
        self.assertIn("('info', 'pipeline_finished args=--fecha-inicio 2024-01-01", text)
        self.assertNotIn('rt-123456', text)

    def test_exit_4_is_a_successful_skip(self):
        log, run = self.run_with(
            'echo "qb-items-backfill: error: trigger \\"x\\" already completed" >&2; exit 4')
        self.assertEqual(run(), {'exit_code': 4, 'outcome': 'skipped'})
        self.assertIn(('info', 'qb-items-backfill: error: trigger "x" already completed'),
                      log.lines)

    def test_failures_carry_the_binarys_line(self):
        for code in (1, 2, 3, 5, 6):
            log, run = self.run_with(
                f'echo \'{{"level":"ERROR","message":"boom"}}\' >&2\n'
                f'echo "qb-items-backfill: error: the reason {code}" >&2; exit {code}')
            with self.assertRaises(BackfillFailed) as e:
                run()
            self.assertIn(f'exited with {code} (', str(e.exception))
            self.assertIn(f'qb-items-backfill: error: the reason {code}', str(e.exception))
            self.assertIn(('error', 'boom'), log.lines)

    def test_a_missing_binary_says_where_it_looked(self):
        with self.assertRaises(BackfillFailed) as e:
            qb_runner.run_backfill('qb-customers-backfill', dict(self.vars), {}.get, self.base)
        self.assertIn('QB_BIN_DIR', str(e.exception))


if __name__ == '__main__':
    unittest.main()
