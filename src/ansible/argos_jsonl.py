# -*- coding: utf-8 -*-
# Argos stdout callback: one JSON object per line on stdout, nothing else.
#
# Select it with:
#   ANSIBLE_CALLBACK_PLUGINS=<dir containing this file>
#   ANSIBLE_STDOUT_CALLBACK=argos_jsonl
#
# Events (one per line, keys exactly as listed; "msg" is always a string or null):
#   {"event":"playbook_start","playbook":"api.yml"}
#   {"event":"stopped","playbook":"front.yml"}   (a host failed: the run ends before this one)
#   {"event":"play_start","play":"<name>"}
#   {"event":"task_start","task":"<name>","role":"<role>"|null}
#   {"event":"host_ok","task":..,"host":..,"changed":bool,"msg":str|null}
#   {"event":"host_failed","task":..,"host":..,"msg":str,"ignored":bool}
#   {"event":"host_unreachable","task":..,"host":..,"msg":str}
#   {"event":"host_skipped","task":..,"host":..}
#   {"event":"warning","msg":str}
#   {"event":"stats","hosts":{"<host>":{"ok":n,"changed":n,"failures":n,"unreachable":n,
#                                       "skipped":n,"rescued":n,"ignored":n}}}
#
# no_log: a censored result only carries the censor text, so msg is that text, never a value.
# Loops: one event per task and host (the aggregate); msg is built from the item results.
# Warnings and deprecations raised by ansible itself (not by a task) still go to stderr.

from __future__ import annotations

DOCUMENTATION = """
    name: argos_jsonl
    type: stdout
    short_description: one JSON event per line for the Argos engine
    description:
      - Prints exactly one JSON object per line on stdout (flushed) and nothing else.
"""

import json
import os
import sys

from ansible.plugins.callback import CallbackBase

# Keys of a debug result that are bookkeeping, not the printed value.
_DEBUG_HIDDEN = frozenset((
    'changed', 'failed', 'skipped', 'invocation', 'skip_reason', 'msg', 'censored',
    'warnings', 'deprecations', 'exception', 'ansible_loop_var', 'ansible_index_var',
    'ansible_loop', 'item', 'results', 'attempts', 'retries', '_ansible_no_log',
    '_ansible_verbose_always', '_ansible_item_label', '_ansible_ignore_errors',
    '_ansible_item_result',
))
_DEBUG_ACTIONS = frozenset(('debug', 'ansible.builtin.debug', 'ansible.legacy.debug'))


def _clean_str(value):
    """A str that encodes to valid UTF-8 (lone surrogates from undecodable bytes are replaced)."""
    if not isinstance(value, str):
        value = str(value)
    try:
        value.encode('utf-8')
        return value
    except UnicodeEncodeError:
        pass
    try:
        return value.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')
    except UnicodeEncodeError:
        return value.encode('utf-8', 'replace').decode('utf-8')


def _clean(obj):
    if isinstance(obj, str):
        return _clean_str(obj)
    if isinstance(obj, dict):
        return {_clean_str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _to_text(value):
    """Render any result value as a display string (JSON for structures)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(_clean(value), ensure_ascii=False, sort_keys=True, default=str)
    except Exception:  # pragma: no cover - defensive
        return repr(value)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'argos_jsonl'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._out = sys.stdout
        # A host failed (not ignored) or was unreachable in this run.
        self._failed = False

    # ---- output -----------------------------------------------------------------------

    def _emit(self, event):
        line = json.dumps(_clean(event), ensure_ascii=False, default=str, separators=(',', ':'))
        data = (line + '\n').encode('utf-8', 'replace')
        lock = getattr(self._display, '_lock', None)
        try:
            if lock is not None:
                lock.acquire()
            try:
                self._out.flush()
                self._out.buffer.write(data)
                self._out.buffer.flush()
            except AttributeError:  # stdout without a binary buffer (tests)
                self._out.write(line + '\n')
                self._out.flush()
        except BrokenPipeError:
            pass
        finally:
            if lock is not None:
                lock.release()

    # ---- helpers ----------------------------------------------------------------------

    @staticmethod
    def _task_name(task):
        name = (task.name or '').strip() if task is not None else ''
        if name:
            return name
        return str(getattr(task, 'action', '') or '')

    @staticmethod
    def _role_name(task):
        role = getattr(task, '_role', None)
        if role is None:
            return None
        try:
            return role.get_name(include_role_fqcn=False)
        except TypeError:
            return role.get_name()

    @staticmethod
    def _is_censored(res):
        return isinstance(res, dict) and 'censored' in res

    def _emit_result_warnings(self, result):
        """Task-level warnings/deprecations (the default callback prints them to stderr)."""
        for attr in ('warnings', 'deprecations'):
            try:
                items = list(getattr(result, attr, None) or [])
            except Exception:
                items = []
            for item in items:
                event = getattr(item, 'event', None)
                text = getattr(event, 'msg', None) if event is not None else None
                if text is None:
                    text = item if isinstance(item, str) else str(item)
                prefix = '[DEPRECATION WARNING]: ' if attr == 'deprecations' else ''
                self._emit({'event': 'warning', 'msg': prefix + _to_text(text)})

    def _ok_msg(self, res, action):
        """msg for a successful (item) result; the censor text when no_log applied."""
        if not isinstance(res, dict):
            return _to_text(res)
        if self._is_censored(res):
            return _to_text(res['censored'])
        if res.get('msg') not in (None, ''):
            return _to_text(res['msg'])
        if action in _DEBUG_ACTIONS:
            shown = {k: v for k, v in res.items() if k not in _DEBUG_HIDDEN and not k.startswith('_ansible')}
            if len(shown) == 1:
                (key, value), = shown.items()
                return '%s: %s' % (key, _to_text(value))
            if shown:
                return _to_text(shown)
        return None

    def _error_msg(self, res):
        """Best error text of a failed/unreachable (item) result."""
        if not isinstance(res, dict):
            return _to_text(res)
        if self._is_censored(res):
            return _to_text(res['censored'])
        # command/shell: "non-zero return code" alone says nothing; add rc and the output.
        if res.get('msg') == 'non-zero return code' and 'rc' in res:
            out = _to_text(res.get('stderr') or res.get('stdout') or '').strip()
            return 'non-zero return code (rc=%s)%s' % (res.get('rc'), ': ' + out if out else '')
        for key in ('msg', 'stderr', 'stdout', 'module_stderr', 'module_stdout', 'reason'):
            value = res.get(key)
            if value not in (None, '', [], {}):
                return _to_text(value).strip() or _to_text(value)
        exc = res.get('exception')
        if exc:
            return _to_text(getattr(exc, 'msg', None) or exc)
        shown = {k: v for k, v in res.items() if not k.startswith('_ansible') and k not in ('invocation',)}
        return repr(shown)

    @staticmethod
    def _item_label(item_res):
        if not isinstance(item_res, dict):
            return None
        label = item_res.get('_ansible_item_label', item_res.get('item'))
        return None if label is None else _to_text(label)

    def _loop_ok_msg(self, res, action):
        results = res.get('results') if isinstance(res, dict) else None
        if not isinstance(results, list) or not results:
            return None
        lines = []
        for item_res in results:
            if isinstance(item_res, dict) and item_res.get('skipped'):
                continue
            text = self._ok_msg(item_res, action)
            if text is None:
                continue
            label = None if self._is_censored(item_res) else self._item_label(item_res)
            lines.append('(item=%s) %s' % (label, text) if label is not None else text)
        return '\n'.join(lines) if lines else None

    def _loop_error_msg(self, res):
        results = res.get('results') if isinstance(res, dict) else None
        if not isinstance(results, list):
            return None
        lines = []
        for item_res in results:
            if isinstance(item_res, dict) and (item_res.get('failed') or item_res.get('unreachable')):
                label = None if self._is_censored(item_res) else self._item_label(item_res)
                text = self._error_msg(item_res)
                lines.append('(item=%s) %s' % (label, text) if label is not None else text)
        return '\n'.join(lines) if lines else None

    def _host_task(self, result):
        return self._task_name(result.task), result.host.get_name()

    # ---- playbook events --------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        name = getattr(playbook, '_file_name', None) or ''
        if self._failed:
            # Several playbooks in one run are several roles of one deploy, and a role that
            # failed stops the deploy before the next role, as it did when each role was a run
            # of its own. Ansible itself would go on with the next playbook (its hosts failed
            # nothing yet), so the run ends here: this is the main process, between playbooks,
            # with no task running; the supervisor reaps what is left.
            self._emit({'event': 'stopped', 'playbook': os.path.basename(name)})
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        self._emit({'event': 'playbook_start', 'playbook': os.path.basename(name)})

    def v2_playbook_on_play_start(self, play):
        self._emit({'event': 'play_start', 'play': (play.get_name() or '').strip()})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit({'event': 'task_start', 'task': self._task_name(task), 'role': self._role_name(task)})

    def v2_playbook_on_handler_task_start(self, task):
        self._emit({'event': 'task_start', 'task': self._task_name(task), 'role': self._role_name(task)})

    def v2_playbook_on_no_hosts_matched(self):
        self._emit({'event': 'warning', 'msg': 'skipping: no hosts matched'})

    def v2_playbook_on_no_hosts_remaining(self):
        self._emit({'event': 'warning', 'msg': 'no hosts remaining'})

    # ---- host results -----------------------------------------------------------------

    def v2_runner_on_ok(self, result):
        task, host = self._host_task(result)
        res = result.result
        action = getattr(result.task, 'action', '')
        self._emit_result_warnings(result)
        if self._is_censored(res):
            msg = _to_text(res['censored'])
        elif isinstance(res.get('results'), list):
            msg = self._loop_ok_msg(res, action)
            if msg is None and res.get('msg') not in (None, ''):
                msg = _to_text(res['msg'])
        else:
            msg = self._ok_msg(res, action)
        self._emit({'event': 'host_ok', 'task': task, 'host': host,
                    'changed': bool(result.is_changed()), 'msg': msg})

    def v2_runner_on_failed(self, result, ignore_errors=False):
        task, host = self._host_task(result)
        res = result.result
        self._emit_result_warnings(result)
        msg = None
        if not self._is_censored(res) and isinstance(res.get('results'), list):
            msg = self._loop_error_msg(res)
        if msg is None:
            msg = self._error_msg(res)
        self._failed = self._failed or not ignore_errors
        self._emit({'event': 'host_failed', 'task': task, 'host': host,
                    'msg': msg, 'ignored': bool(ignore_errors)})

    def v2_runner_on_unreachable(self, result):
        task, host = self._host_task(result)
        self._failed = True
        self._emit({'event': 'host_unreachable', 'task': task, 'host': host,
                    'msg': self._error_msg(result.result)})

    def v2_runner_on_skipped(self, result):
        task, host = self._host_task(result)
        self._emit({'event': 'host_skipped', 'task': task, 'host': host})

    # Item events are folded into the task's aggregate event (see _loop_*_msg); implementing
    # them as no-ops keeps CallbackBase from doing anything with them.
    def v2_runner_item_on_ok(self, result):
        pass

    def v2_runner_item_on_failed(self, result):
        pass

    def v2_runner_item_on_skipped(self, result):
        pass

    def v2_runner_retry(self, result):
        pass

    # ---- end ----------------------------------------------------------------------------

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for host in sorted(stats.processed.keys()):
            s = stats.summarize(host)
            hosts[host] = {k: int(s.get(k, 0)) for k in
                           ('ok', 'changed', 'failures', 'unreachable', 'skipped', 'rescued', 'ignored')}
        self._emit({'event': 'stats', 'hosts': hosts})
