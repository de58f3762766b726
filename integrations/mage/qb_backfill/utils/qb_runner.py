"""Runs one qb-backfill pipeline binary from a Mage block.

The block passes its keyword arguments (Mage's runtime variables and its logger). This module:

* reads ``fecha_inicio`` / ``fecha_fin`` (required, no defaults) and the optional ``trigger``
  and ``force`` variables and turns them into the binary's command line;
* reads the secrets of ``SECRETS`` from Mage Secrets (``get_secret_value``) and hands them to
  the child ONLY through its environment: never on its command line, never in a log line;
* relays the binary's JSON log lines (stderr) into the block log at their own level;
* maps the exit code: 0 succeeds, 4 ("trigger already completed") is a skip that succeeds,
  anything else fails the block with the binary's one-line ``error:`` message.

Mage's own exit code for a headless ``mage run`` is only 0 or 1, so the block also returns the
binary's exit code and outcome as its output.
"""

import json
import os
import shutil
import subprocess
import threading

# Mage secret name -> environment variable of the binaries. Each one is optional: a secret not
# set in Mage leaves the variable as the Mage process has it (or unset), and the binary says
# what is missing (exit 2).
SECRETS = {
    'qbo_client_id': 'QBO_CLIENT_ID',
    'qbo_client_secret': 'QBO_CLIENT_SECRET',
    'qbo_refresh_token': 'QBO_REFRESH_TOKEN',
    'qbo_realm_id': 'QBO_REALM_ID',
    'qbo_token_key': 'QBO_TOKEN_KEY',
    'database_url': 'DATABASE_URL',
    'pg_password': 'PG_PASSWORD',
}

# The variables whose values are masked should they ever reach a log line (realm and client
# ids are identifiers, not secrets, and stay readable).
MASKED = ('QBO_CLIENT_SECRET', 'QBO_REFRESH_TOKEN', 'QBO_TOKEN_KEY', 'DATABASE_URL', 'PG_PASSWORD')

# Exit codes of the binaries (SPEC section 8).
EXIT_OK = 0
EXIT_ALREADY_COMPLETED = 4
EXIT_MEANINGS = {
    1: 'some windows failed or mismatched',
    2: 'usage or configuration error',
    3: 'authentication failed',
    5: 'database unreachable',
    6: 'refused by QuickBooks',
    130: 'interrupted',
    143: 'terminated',
}

# The run's range and trigger come from Mage's variables only, never from Mage's environment.
_NOT_INHERITED = ('FECHA_INICIO', 'FECHA_FIN')

_TRUE = {'1', 'true', 'yes', 'on'}
_FALSE = {'', '0', 'false', 'no', 'off'}


class BackfillFailed(Exception):
    """The binary failed (or could not start); the message is the binary's own line."""


def binary_path(name, env=None):
    """The binary ``name``: in ``$QB_BIN_DIR`` when that is set, else found on ``PATH``."""
    env = os.environ if env is None else env
    bin_dir = env.get('QB_BIN_DIR')
    if bin_dir:
        path = os.path.join(bin_dir, name)
        if not os.access(path, os.X_OK):
            raise BackfillFailed(f'{name} not found: {path} is not an executable (QB_BIN_DIR)')
        return path
    path = shutil.which(name, path=env.get('PATH'))
    if path is None:
        raise BackfillFailed(f'{name} not found on PATH; set QB_BIN_DIR to the binaries\' folder')
    return path


def _required(variables, name):
    value = variables.get(name)
    if value is None or str(value).strip() == '':
        raise BackfillFailed(
            f'the runtime variable `{name}` is missing: set fecha_inicio and fecha_fin '
            '(a date like 2024-01-01 or RFC 3339) on the trigger or with --runtime-vars'
        )
    return str(value).strip()


def _flag(variables, name):
    value = variables.get(name)
    if isinstance(value, bool):
        return value
    text = '' if value is None else str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BackfillFailed(f'the runtime variable `{name}` must be true or false, not {value!r}')


def command_line(binary, variables):
    """The binary's arguments from Mage's variables (``BackfillFailed`` when one is missing)."""
    args = [
        binary,
        '--fecha-inicio', _required(variables, 'fecha_inicio'),
        '--fecha-fin', _required(variables, 'fecha_fin'),
    ]
    trigger = variables.get('trigger')
    if trigger is not None and str(trigger).strip():
        args += ['--trigger', str(trigger).strip()]
    if _flag(variables, 'force'):
        args.append('--force')
    return args


def child_environment(read_secret, base=None):
    """The child's environment: ``base`` (Mage's own) with the Mage Secrets laid over it."""
    env = dict(os.environ if base is None else base)
    for name in _NOT_INHERITED:
        env.pop(name, None)
    # JSON lines on stderr whatever the terminal; the binary's default filter otherwise.
    env['NO_COLOR'] = '1'
    for secret, var in SECRETS.items():
        value = read_secret(secret)
        if value:
            env[var] = value
    return env


def mage_secret(name):
    """A Mage Secret's value, or None when it is not set (no warning printed)."""
    from mage_ai.data_preparation.shared.secrets import get_secret_value

    return get_secret_value(name, suppress_warning=True)


_LEVELS = {
    'TRACE': 'debug',
    'DEBUG': 'debug',
    'INFO': 'info',
    'WARN': 'warning',
    'WARNING': 'warning',
    'ERROR': 'error',
}


def _mask(text, secrets):
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, '******')
    return text


def relay_line(logger, line, secrets=()):
    """One stderr line of the binary into the block log; returns the line's level.

    A JSON object is logged at its ``level`` as its ``message`` followed by its other fields;
    any other line (the binary's final ``error:`` line) is logged as an error. A secret value
    that would appear in the line is masked first (the binaries never print one; this is the
    second lock).
    """
    text = _mask(line.rstrip('\n'), secrets)
    try:
        event = json.loads(text)
    except ValueError:
        event = None
    if isinstance(event, dict):
        level = _LEVELS.get(str(event.get('level', 'INFO')).upper(), 'info')
        message = str(event.get('message', ''))
        fields = ' '.join(
            f'{k}={v}' for k, v in event.items()
            if k not in ('level', 'message', 'timestamp', 'target', 'span')
            and not k.startswith('log.')
        )
        getattr(logger, level)(f'{message} {fields}'.rstrip())
        return level
    if text.strip():
        logger.error(text)
        return 'error'
    return None


class _PrintLogger:
    """Stand-in when a block gets no logger: lines go to stdout (Mage captures it)."""

    def _log(self, level, message):
        print(f'{level.upper()} {message}', flush=True)

    def debug(self, m):
        self._log('debug', m)

    def info(self, m):
        self._log('info', m)

    def warning(self, m):
        self._log('warning', m)

    def error(self, m):
        self._log('error', m)


def run_backfill(binary, variables, read_secret=mage_secret, base_env=None):
    """Runs ``binary`` for the block; returns ``{'exit_code', 'outcome'}`` or raises.

    ``variables`` are the block's keyword arguments (runtime variables and ``logger``).
    """
    logger = variables.get('logger') or _PrintLogger()
    args = command_line(binary, variables)
    env = child_environment(read_secret, base_env)
    secret_values = [env[v] for v in MASKED if env.get(v)]
    path = binary_path(binary, env)
    # The command line holds no secret (they are in env only), so it may be logged.
    logger.info('running ' + ' '.join([path] + args[1:]))
    try:
        child = subprocess.Popen(
            [path] + args[1:],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
    except OSError as e:
        raise BackfillFailed(f'{binary} could not start: {e}') from e

    # The binary's plain (non-JSON) lines: its final one-line `error:` message. They are
    # logged once the exit code says what they mean (an error, or the notice of a skip).
    plain = []
    last_error_event = []

    def pump(stream, is_stderr):
        for line in stream:
            if not is_stderr:
                if line.strip():
                    logger.info(_mask(line.rstrip('\n'), secret_values))
                continue
            if not line.lstrip().startswith('{'):
                if line.strip():
                    plain.append(_mask(line.strip(), secret_values))
                continue
            if relay_line(logger, line, secret_values) == 'error':
                try:
                    event = json.loads(line)
                    last_error_event.append(_mask(str(event.get('message', '')), secret_values))
                except ValueError:
                    pass

    threads = [
        threading.Thread(target=pump, args=(child.stdout, False), daemon=True),
        threading.Thread(target=pump, args=(child.stderr, True), daemon=True),
    ]
    for t in threads:
        t.start()
    code = child.wait()
    for t in threads:
        t.join()
    child.stdout.close()
    child.stderr.close()

    for line in plain:
        (logger.info if code in (EXIT_OK, EXIT_ALREADY_COMPLETED) else logger.error)(line)
    message = (plain or last_error_event or [''])[-1]
    if code == EXIT_OK:
        logger.info(f'{binary} succeeded (exit 0)')
        return {'exit_code': code, 'outcome': 'succeeded'}
    if code == EXIT_ALREADY_COMPLETED:
        logger.info(
            f'{binary}: skipped, the trigger was already completed (exit 4); '
            'set force=true to run it again'
        )
        return {'exit_code': code, 'outcome': 'skipped'}
    meaning = EXIT_MEANINGS.get(code, 'failed')
    raise BackfillFailed(f'{binary} exited with {code} ({meaning}): {message or "no message"}')
