#!/usr/bin/env bash
# Probes the Argos Ansible side end to end, locally (never contacts anything but this machine):
#   1. --syntax-check of every real playbook (playbooks/*.yml) against an engine-shaped inventory;
#   2. every sandbox playbook (config/sandbox/playbooks/*.yml) against local fake hosts, with the
#      argos_jsonl stdout callback: every stdout line is JSON, files appear only under sandbox_dir;
#   3. a failing task -> host_failed naming task and host, exit code 2;
#   4. a debug task printing db_password carries it in msg (the Rust side redacts it), while a
#      no_log task does not reveal it; an unreachable host -> host_unreachable, exit code 4.
# Exits non-zero on any failure. Writes only under a mktemp dir in /tmp.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${ARGOS_VENV:-$root/.venv}"
[ -x "$venv/bin/ansible-playbook" ] || "$root/scripts/bootstrap"
ap="$venv/bin/ansible-playbook"
py="$venv/bin/python3"

tmp="$(mktemp -d /tmp/argos-ansible-probe.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
sandbox="$tmp/sandbox"
mkdir -p "$sandbox"

fails=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; fails=$((fails + 1)); }
now_ms() { date +%s%3N; }

# Keep Ansible's own state out of $HOME: everything under the temp dir.
export ANSIBLE_HOME="$tmp/ansible-home"
export ANSIBLE_LOCAL_TEMP="$tmp/ansible-home/tmp"
export ANSIBLE_REMOTE_TEMP="$tmp/ansible-home/remote-tmp"
export ANSIBLE_SSH_CONTROL_PATH_DIR="$tmp/ansible-home/cp"   # ssh default is ~/.ansible/cp, not under ANSIBLE_HOME
export ANSIBLE_RETRY_FILES_ENABLED=false
export ANSIBLE_NOCOLOR=1
export ANSIBLE_HOST_KEY_CHECKING=false
# The callback.
export ANSIBLE_CALLBACK_PLUGINS="$root/src/ansible"
export ANSIBLE_STDOUT_CALLBACK=argos_jsonl
# Secrets, as the engine would pass them (environment only).
secret="probe-Sécret/\"pw\"-$$"
export ARGOS_DB_PASSWORD="$secret"
export ARGOS_APP_SECRET_KEY="probe-app-key-$$"

cd "$root"
home_ansible_before=no; [ -e "$HOME/.ansible" ] && home_ansible_before=yes

# ---- 1. syntax checks of the real playbooks --------------------------------------------------
real_inv="$tmp/real-inventory.yml"
{
  echo "all:"
  echo "  vars: {ansible_user: ubuntu, ansible_python_interpreter: /usr/bin/python3}"
  echo "  children:"
  n=5
  for g in image knowledge api front collector broker worker; do
    echo "    $g:"
    echo "      hosts:"
    echo "        argos-staging-$g-i-0abc$n: {ansible_host: 10.0.0.$n, instance_id: i-0abc$n, private_ip: 10.0.0.$n, public_ip: 1.2.3.$n}"
    n=$((n + 1))
  done
} > "$real_inv"
for pb in playbooks/*.yml; do
  if out="$(ANSIBLE_STDOUT_CALLBACK=default "$ap" --syntax-check -i "$real_inv" "$pb" 2>&1)"; then
    pass "syntax-check $pb"
  else
    fail "syntax-check $pb"; printf '%s\n' "$out" | sed 's/^/      /'
  fi
done

# A broken playbook must fail the syntax check (exit code recorded for the report).
printf -- '- hosts: api\n  tasks:\n    - ansible.builtin.debug: {msg: x}\n      bogus_keyword: 1\n' > "$tmp/broken.yml"
set +e; "$ap" --syntax-check -i "$real_inv" "$tmp/broken.yml" >/dev/null 2>&1; rc=$?; set -e
if [ "$rc" -ne 0 ]; then pass "syntax error -> exit $rc"; else fail "syntax error not detected"; fi

# ---- 2. sandbox playbooks against local hosts --------------------------------------------------
inv="$tmp/inventory.yml"
{
  echo "all:"
  echo "  vars: {ansible_connection: local, ansible_python_interpreter: $py}"
  echo "  children:"
  n=10
  for g in image knowledge api front collector broker worker; do
    echo "    $g:"
    echo "      hosts:"
    hosts=1; [ "$g" = api ] && hosts=2
    for i in $(seq 1 "$hosts"); do
      echo "        argos-probe-$g-i-0f$n: {instance_id: i-0f$n, private_ip: 10.9.0.$n, public_ip: 198.51.100.$n}"
      n=$((n + 1))
    done
  done
} > "$inv"

extra=(-e app_name=argos -e env_name=probe -e database_host=db.probe.internal -e database_port=5432
       -e knowledge_host=10.9.0.11 -e "sandbox_dir=$sandbox")

check_jsonl() { # $1 = file; every line must be one JSON object with an "event"
  "$py" - "$1" <<'PY'
import json, sys
bad = 0
for n, line in enumerate(open(sys.argv[1], encoding='utf-8'), 1):
    try:
        obj = json.loads(line)
        assert isinstance(obj, dict) and 'event' in obj
    except Exception as e:
        print(f"      line {n} is not a JSON event: {line!r} ({e})"); bad += 1
sys.exit(1 if bad else 0)
PY
}

for pb in image knowledge api front collector broker worker; do
  out="$tmp/$pb.out"; err="$tmp/$pb.err"
  start=$(now_ms)
  set +e; "$ap" -i "$inv" "${extra[@]}" "config/sandbox/playbooks/$pb.yml" >"$out" 2>"$err"; rc=$?; set -e
  ms=$(( $(now_ms) - start ))
  if [ "$rc" -eq 0 ] && check_jsonl "$out" && grep -q '"event":"stats"' "$out"; then
    pass "sandbox $pb.yml exit 0 in ${ms} ms, $(wc -l <"$out") JSON lines"
  else
    fail "sandbox $pb.yml exit $rc"; sed 's/^/      /' "$out" "$err" | tail -20
  fi
  if grep -qF -- "$secret" "$out"; then fail "sandbox $pb.yml printed the db password"; fi
done
echo "      sample (api.yml):"; head -8 "$tmp/api.out" | sed 's/^/      /'
if [ -s "$tmp/api.err" ]; then echo "      stderr (api.yml):"; sed 's/^/      /' "$tmp/api.err"; fi

# Files only under sandbox_dir/<inventory_hostname>/ , and the expected ones exist.
unexpected="$(find "$tmp" -mindepth 1 -newer "$inv" \
  -not -path "$sandbox" -not -path "$sandbox/*" -not -path "$tmp/ansible-home*" -not -name '*.out' -not -name '*.err' -print)"
if [ -z "$unexpected" ]; then pass "no files written outside sandbox_dir (in the temp dir)"; else fail "unexpected files: $unexpected"; fi
repo_new="$(find "$root/playbooks" "$root/config/sandbox" -newer "$inv" -print 2>/dev/null)"
[ -z "$repo_new" ] && pass "nothing written into playbooks/ or config/sandbox/" || fail "written in the repo: $repo_new"
stray="$(find "$sandbox" -mindepth 1 -maxdepth 1 -not -name 'argos-probe-*' -print)"
[ -z "$stray" ] && pass "sandbox_dir holds only per-host directories" || fail "stray entries in sandbox_dir: $stray"
for f in argos-probe-image-i-0f10/argos-image-manifest.json \
         argos-probe-knowledge-i-0f11/etc/systemd/system/fuseki.service \
         argos-probe-api-i-0f12/srv/argos/app/argos/conf/app.py \
         argos-probe-api-i-0f13/srv/argos/app/argos/conf/celery.py \
         argos-probe-api-i-0f12/etc/systemd/system/argos-api.service \
         argos-probe-front-i-0f14/etc/nginx/sites-available/argos \
         argos-probe-collector-i-0f15/etc/systemd/system/argos-collector.service \
         argos-probe-worker-i-0f17/argos-deployed.json; do
  [ -f "$sandbox/$f" ] && pass "exists $f" || fail "missing $f"
done
migr=$(find "$sandbox" -name migrations.log | wc -l)
[ "$migr" -eq 1 ] && pass "migrations ran once for 2 api hosts" || fail "migrations.log count $migr (want 1)"
if "$py" - "$sandbox/argos-probe-api-i-0f12/srv/argos/app/argos/conf/app.py" "$secret" <<'PY'
import runpy, sys
cfg = runpy.run_path(sys.argv[1])
assert cfg['DATABASE_PASSWORD'] == sys.argv[2], 'password'
assert cfg['DATABASE_HOST'] == 'db.probe.internal' and cfg['DATABASE_PORT'] == 5432
assert cfg['KNOWLEDGE_HOST'] == '10.9.0.11' and cfg['ENVIRONMENT'] == 'probe'
assert cfg['SQLALCHEMY_DATABASE_URI'].startswith('postgresql://argos:probe-S%C3%A9cret%2F%22pw%22-')
PY
then pass "rendered app_config.py is valid Python with the stack outputs and the secret"; else fail "rendered app_config.py"; fi
grep -q 'server 10.9.0.12:5000;' "$sandbox/argos-probe-front-i-0f14/etc/nginx/sites-available/argos" \
  && pass "front upstream is the first api host" || fail "front upstream"
if grep -rqF -- "$secret" "$sandbox/argos-probe-image-i-0f10"; then fail "image sandbox holds a secret"; else pass "image sandbox holds no secret"; fi

# Missing / relative sandbox_dir fails early with a clear message.
for bad in "" "sandbox_dir=relative/dir"; do
  args=(-i "$inv" -e app_name=argos -e env_name=probe -e database_host=x -e database_port=5432 -e knowledge_host=y)
  [ -n "$bad" ] && args+=(-e "$bad")
  set +e; "$ap" "${args[@]}" config/sandbox/playbooks/front.yml >"$tmp/bad.out" 2>&1; rc=$?; set -e
  if [ "$rc" -eq 2 ] && grep -q '"event":"host_failed","task":"Check sandbox_dir".*sandbox_dir must be' "$tmp/bad.out"; then
    pass "sandbox_dir '${bad#sandbox_dir=}' refused (exit 2, host_failed on Check sandbox_dir)"
  else
    fail "bad sandbox_dir '${bad}' not refused (exit $rc)"; sed 's/^/      /' "$tmp/bad.out" | tail -5
  fi
done

# ---- 3./4. failing task, secret in debug, no_log, unreachable ----------------------------------
cat > "$tmp/adhoc.yml" <<'EOF'
- name: Probe play
  hosts: api
  gather_facts: false
  vars_files:
    - "{{ repo_root }}/playbooks/group_vars/all.yml"
  tasks:
    - name: Show the password
      ansible.builtin.debug:
        msg: "db_password is {{ db_password }}"
      run_once: true
    - name: Hide the password
      ansible.builtin.debug:
        msg: "db_password is {{ db_password }}"
      no_log: true
    - name: Fail on purpose
      ansible.builtin.command: "sh -c 'echo probe failure >&2; exit 3'"
      when: inventory_hostname is search('0f13')
EOF
start=$(now_ms)
set +e; "$ap" -i "$inv" -e "repo_root=$root" "$tmp/adhoc.yml" >"$tmp/adhoc.out" 2>"$tmp/adhoc.err"; rc=$?; set -e
ms=$(( $(now_ms) - start ))
check_jsonl "$tmp/adhoc.out" && pass "ad-hoc run: every stdout line is JSON (exit $rc, ${ms} ms)" || fail "ad-hoc run output"
[ "$rc" -eq 2 ] && pass "failed task -> exit 2" || fail "failed task -> exit $rc (want 2)"
line="$(grep '"event":"host_failed"' "$tmp/adhoc.out" || true)"
if [[ "$line" == *'"task":"Fail on purpose"'* && "$line" == *'"host":"argos-probe-api-i-0f13"'* && "$line" == *'probe failure'* ]]; then
  pass "host_failed names task and host: $line"
else fail "host_failed line: $line"; fi
line="$(grep '"task":"Show the password"' "$tmp/adhoc.out" | grep host_ok || true)"
if "$py" -c 'import json,sys; o=json.loads(sys.argv[1]); sys.exit(0 if sys.argv[2] in o["msg"] else 1)' "$line" "$secret" 2>/dev/null; then
  pass "debug of db_password carries it in msg (to be redacted by the engine)"
else fail "debug line lacks the password: $line"; fi
line="$(grep '"task":"Hide the password"' "$tmp/adhoc.out" | grep host_ok | head -1)"
if [[ "$line" == *"no_log: true"* ]] && ! grep '"task":"Hide the password"' "$tmp/adhoc.out" | grep -qF -- "$secret"; then
  pass "no_log task shows only the censor text: $line"
else fail "no_log line: $line"; fi
if grep -qF -- "$secret" "$tmp/adhoc.err"; then fail "stderr carries the password"; fi

# Unreachable host: an ssh host on a closed loopback port.
printf 'all:\n  hosts:\n    deadhost: {ansible_host: 127.0.0.1, ansible_port: 9, ansible_user: nobody, ansible_connection: ssh, ansible_python_interpreter: %s}\n' "$py" > "$tmp/dead.yml"
printf -- '- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Ping\n      ansible.builtin.ping:\n' > "$tmp/ping.yml"
set +e; "$ap" -i "$tmp/dead.yml" "$tmp/ping.yml" >"$tmp/dead.out" 2>&1; rc=$?; set -e
if [ "$rc" -eq 4 ] && grep -q '"event":"host_unreachable","task":"Ping","host":"deadhost"' "$tmp/dead.out"; then
  pass "unreachable host -> host_unreachable, exit 4"
else fail "unreachable: exit $rc"; sed 's/^/      /' "$tmp/dead.out" | tail -5; fi

if [ "$home_ansible_before" = no ]; then
  if [ -e "$HOME/.ansible" ]; then fail "\$HOME/.ansible was created"; else pass "nothing written to \$HOME/.ansible"; fi
fi

echo
if [ "$fails" -eq 0 ]; then echo "ansible_probe: all checks passed"; else echo "ansible_probe: $fails check(s) FAILED"; fi
[ "$fails" -eq 0 ]
