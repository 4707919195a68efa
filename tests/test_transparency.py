"""`slm submit` is invisible to the job: plain `sbatch` is the oracle.

Each scenario is ONE script file, submitted twice on the real cluster -- with
plain `sbatch` and with `slm submit`, from two directories laid out alike --
and what the script itself observed (the marker files it writes, its -o/-e
bytes, the files it left) and Slurm's own record of its end (`sacct -o
jobid,state,exitcode`) are compared.  The only differences allowed are the
deliberate ones, each named with its reason in DELIBERATE below (and in the
README's "What SLM changes in your job").

Every scenario of a mode is submitted at once by the module fixture; a driver
thread performs each scenario's action (scancel, suspend/resume) as soon as
its job says it is ready; the tests then await results (a marker, then
sacct) with deadlines.  The `cluster` fixture (conftest.py) runs the module
once per proctrack plugin with SLM_SLURM_MODES="linuxproc cgroup".  Without
Slurm the module skips; with SLM_REQUIRE_SLURM=1 it fails.
"""
import collections
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import MAIN_PYTHON, SLM, Sink

POLL = 0.1           # the poll interval of every wait below (never a wait by itself)
DEADLINE = float(os.environ.get("SLM_TRANSPARENCY_DEADLINE", 300))  # seconds per scenario
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
         "PREEMPTED", "BOOT_FAIL", "DEADLINE")
TOKEN = "tok-6c2f0a9e-not-in-any-file"
HOOK_SECRET = "hook-94b1d7-not-in-any-file"
# what slm adds to the job's environment, on purpose (README)
SLM_OWN = ("SLM_ACTIVE", "SLM_JOB_ID", "SLM_SETTINGS")

# ---------------------------------------------------------------------------
# The scripts
# ---------------------------------------------------------------------------

HEAD = '#!/bin/bash\nM="$SLURM_SUBMIT_DIR/marker"\n'
SIGNALS = "TERM CONT USR1 USR2 TSTP HUP"


def probe(wait_for):
    """Traps every signal in the script and in a background child (same process
    group, like any `cmd &`), writes one line per signal received, waits for
    `wait_for`, then lingers a second: a second copy of a signal would show."""
    return HEAD + (
        'P=$$\n'
        # the trap makes its file with a builtin: a `touch` it ran would be one more
        # process in the tree for slm's TERM (deliberate, README) to reach
        'for s in %(sigs)s; do trap "echo \\"script $s\\" >> \\"\\$M\\"; '
        ': > \\"\\$M.$s\\"" $s; done\n'
        '(for s in %(sigs)s; do trap "echo \\"child $s\\" >> \\"\\$M\\"" $s; done\n'
        ' echo "child ready" >> "$M"\n'
        ' while kill -0 $P 2>/dev/null; do sleep 0.1; done) 2>/dev/null &\n'
        'while ! grep -q "child ready" "$M" 2>/dev/null; do sleep 0.05; done\n'
        'echo ready >> "$M"\n'
        'while [ ! -e "$M.%(wait)s" ]; do sleep 0.1; done\n'
        'sleep 1\n'
        'echo end >> "$M"\n' % {"sigs": SIGNALS, "wait": wait_for})


SUSPEND = HEAD + (
    'P=$$\n'
    'trap \'echo "script TSTP" >> "$M"\' TSTP\n'
    'trap \'echo "script CONT" >> "$M"\' CONT\n'
    '(trap \'echo "child TSTP" >> "$M"\' TSTP; trap \'echo "child CONT" >> "$M"\' CONT\n'
    ' echo "child ready" >> "$M"\n'
    ' while kill -0 $P 2>/dev/null; do sleep 0.1; done) &\n'
    'while ! grep -q "child ready" "$M" 2>/dev/null; do sleep 0.05; done\n'
    'echo ready >> "$M"\n'
    # progress ticks (ns) until the pause is over (a gap of 2 s or more: Slurm freezes
    # the job 2 s after SIGTSTP), then ten more: however late the test suspends it (62
    # submissions at once on a busy machine), never a job that ended first; at most ~5 min
    'last=$(date +%s%N); left=-1; n=0\n'
    'while [ "$left" -ne 0 ] && [ "$n" -lt 3000 ]; do\n'
    '  now=$(date +%s%N); echo "$now" >> "$M.ticks"\n'
    '  if [ "$left" -lt 0 ] && [ $((now - last)) -gt 2000000000 ]; then left=10; fi\n'
    '  if [ "$left" -gt 0 ]; then left=$((left - 1)); fi\n'
    '  last=$now n=$((n + 1)); sleep 0.1\n'
    'done\n'
    'echo end >> "$M"\n')

ENV = HEAD + 'env | sort > "$SLURM_SUBMIT_DIR/env.txt"\necho end > "$M"\n'

ARGS = HEAD + (
    '{ echo "argc $#"; printf "arg <%s>\\n" "$@"; echo "cwd $(pwd)"; echo "stdin:"; cat; '
    'echo "umask $(umask)"; ulimit -a; } > "$M"\necho end >> "$M"\n')

OUTPUT = HEAD + (
    "printf 'out\\000\\377\\r\\nno newline'\nprintf 'err \\001\\n' >&2\n"
    "printf 'after\\n'\necho end > \"$M\"\n")

LATE = ('#!/bin/bash\n#SBATCH --comment=early\n\n# a comment\n'
        'echo "name $SLURM_JOB_NAME" > "$SLURM_SUBMIT_DIR/marker"\n'
        '#SBATCH --job-name=late\n#SBATCH --time=7\n'
        'echo "limit $(squeue -h -j $SLURM_JOB_ID -o %l)" >> "$SLURM_SUBMIT_DIR/marker"\n'
        'echo end >> "$SLURM_SUBMIT_DIR/marker"\n')


def exiting(code):
    return HEAD + 'echo "exit %d" > "$M"\nexit %d\n' % (code, code)


def dying(signame):
    # no core file: its bytes would differ between any two runs
    return HEAD + 'ulimit -c 0\necho start > "$M"\nkill -%s $$\necho "still here" >> "$M"\n' \
        % signame


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------


class Scenario(object):
    """script: the one script both variants submit; act(pairs, variant): what the
    test does once the job wrote 'ready'; done(marker): the job's own work is over."""

    def __init__(self, name, script=None, sbatch=(), args=(), env=None, act=None,
                 done="end", ordered=True, stdin_script=False, inputs=None, secrets=False,
                 batch_states=()):
        self.name = name
        self.script = script
        self.sbatch = list(sbatch)
        self.args = list(args)
        self.env = env or {}
        self.act = act
        self.done = done
        self.ordered = ordered          # False: marker lines of several processes, any order
        self.stdin_script = stdin_script
        self.inputs = inputs or {}      # extra files laid in both directories
        self.secrets = secrets          # the settings travel in the environment only
        self.batch_states = batch_states   # .batch step states Slurm records either way


def scancel(*words):
    def act(pairs, variant):
        subprocess.check_call(["scancel"] + list(words) + [variant.job_id])
    return act


def suspend_resume(pairs, variant):
    """Suspend; once the job is frozen (its ticks stop: Slurm freezes it 2 s after
    SIGTSTP), keep it so 3 s; resume.  squeue says SUSPENDED as soon as slurmctld
    has decided; on a loaded machine slurmd may hand the suspend to the step
    seconds later, and a resume that came first would leave no pause to compare."""
    job_id = variant.job_id
    ticks = os.path.join(variant.dir, "marker.ticks")
    subprocess.check_call(["scontrol", "suspend", job_id])
    deadline = time.time() + 60
    size, still_since = -1, time.time()
    while time.time() - still_since < 5.0:
        assert time.time() < deadline, "the job never froze (state %s)" % job_state(job_id)
        now = os.path.getsize(ticks) if os.path.exists(ticks) else 0
        if now != size:
            size, still_since = now, time.time()
        time.sleep(POLL)
    assert job_state(job_id) == "SUSPENDED"
    subprocess.check_call(["scontrol", "resume", job_id])


def go_once_submitted(pairs, variant):
    """The job waits for marker.go: given once slm's SUBMITTED is recorded (at once for
    plain sbatch), so `slm submit --wait` must tell it while sbatch still waits, and
    which of SUBMITTED and RUNNING (two processes) comes first does not matter."""
    deadline = time.time() + 60
    while variant.kind == "slm" and not any(e["status"] == "SUBMITTED"
                                            for e in pairs.events(variant.job_id)):
        assert time.time() < deadline, "no SUBMITTED while the job waits for it"
        time.sleep(POLL)
    open(os.path.join(variant.dir, "marker.go"), "w").close()


NONE_ENV = {"SBATCH_EXPORT": "NONE"}
SCENARIOS = [
    # the slow ones first, so that they start at once
    # Slurm itself records the .batch step of a job that outlives its time limit's SIGTERM
    # as COMPLETED or as TIMEOUT, for plain sbatch too (measured: timing, not slm)
    Scenario("time-limit", probe("TERM"), sbatch=["-t", "1"], ordered=False,
             batch_states=("COMPLETED", "TIMEOUT")),
    # --signal=B:S@T may come up to 60 s early: 2 min - 50 s - 60 s leaves the script 10 s
    # to set its traps (26.05 sent a @100 at once, 0.3 s into the job: it died of it)
    Scenario("signal-B-usr1", probe("USR1"), sbatch=["-t", "2", "--signal=B:USR1@50"],
             ordered=False),
    Scenario("signal-B-usr2", probe("USR2"), sbatch=["-t", "2", "--signal=B:USR2@50"],
             ordered=False),
    Scenario("signal-B-term", probe("TERM"), sbatch=["-t", "2", "--signal=B:TERM@50"],
             ordered=False),
    Scenario("suspend-resume", SUSPEND, act=suspend_resume, ordered=False),
    Scenario("scancel-term-traps", probe("TERM"), act=scancel(), ordered=False),
    Scenario("scancel-b-usr1", probe("USR1"), act=scancel("-b", "--signal=USR1"),
             ordered=False),
    Scenario("scancel-b-usr2", probe("USR2"), act=scancel("-b", "--signal=USR2"),
             ordered=False),
    Scenario("scancel-b-term", probe("TERM"), act=scancel("-b", "--signal=TERM"),
             ordered=False),
    Scenario("scancel-f-usr1", probe("USR1"), act=scancel("-f", "--signal=USR1"),
             ordered=False),
    Scenario("exit-0", exiting(0), done="exit"),
    Scenario("exit-3", exiting(3), done="exit"),
    Scenario("exit-137", exiting(137), done="exit"),
    Scenario("exit-255", exiting(255), done="exit"),
    Scenario("dies-of-kill", dying("KILL"), done="start"),
    Scenario("dies-of-term", dying("TERM"), done="start"),
    Scenario("dies-of-segv", dying("SEGV"), done="start"),
    Scenario("env", ENV, secrets=True),
    Scenario("export-none", ENV, sbatch=["--export=NONE"], secrets=True),
    Scenario("export-vars", ENV, sbatch=["--export=PATH,HOME,SLMTEST_KEPT"],
             env={"SLMTEST_KEPT": "kept", "SLMTEST_DROPPED": "dropped"}, secrets=True),
    Scenario("sbatch-export-env", ENV, env=NONE_ENV, secrets=True),
    Scenario("args-cwd-stdin", ARGS, sbatch=["--input=in.txt"],
             args=["a", "b c", "$HOME", "*", "", "\u00fcn\u00ef", "-x"],
             inputs={"in.txt": b"line 1\nline \xff 2\n"}),
    Scenario("chdir", ARGS, sbatch=["--chdir=sub"], inputs={"sub/.keep": b""}),
    Scenario("dollar-0", HEAD + 'echo "$0" > "$M"; echo end >> "$M"\n'),
    Scenario("output-bytes", OUTPUT),
    Scenario("output-one-file", OUTPUT, sbatch=["-o", "both.txt", "-e", "both.txt"]),
    Scenario("wrap", None, sbatch=["--wrap", 'echo "wrapped $SLURM_JOB_NAME $#"; '
                                             'echo end > marker; exit 4']),
    Scenario("array", HEAD + 'env | grep ^SLURM_ARRAY | sort > "$M.$SLURM_ARRAY_TASK_ID"\n'
             '[ "$SLURM_ARRAY_TASK_ID" != 2 ]\n',
             sbatch=["--array=1-3", "-o", "out-%a.txt", "-e", "err-%a.txt"],
             done=lambda d: all(os.path.exists(os.path.join(d, "marker.%d" % i))
                                for i in (1, 2, 3))),
    Scenario("sbatch-wait", HEAD + 'echo ready > "$M"\nwhile [ ! -e "$M.go" ]; do sleep 0.1; done\n'
             'echo "exit 3" >> "$M"\nexit 3\n', sbatch=["--wait"], act=go_once_submitted,
             done="exit"),
    Scenario("script-on-stdin", HEAD + 'echo "name $SLURM_JOB_NAME" > "$M"\necho end >> "$M"\n',
             stdin_script=True),
    Scenario("late-sbatch-lines", LATE),
]
BY_NAME = {s.name: s for s in SCENARIOS}


# bash 5.2: "...slurm_script: line 12:  4711 Terminated"; bash 5.3 (Debian sid) puts the
# command after it and the location before it only sometimes: "Terminated   sleep 0.1"
NOTICE = re.compile(rb"(?:.*: line \d+: +\d+ )?(?:Terminated|User defined signal [12]|Hangup)"
                    rb"(?: +\S.*)?\r?\n?\Z")


def deliberate_stderr(scenario, plain, mine):
    """The -e files of the signal scenarios, without bash's notices of a
    foreground command killed by a signal ("... Terminated"): whether the
    script was inside its `sleep 0.1` at that instant is timing, with plain
    sbatch too (the marker files count every trap that ran)."""
    if scenario.ordered:
        return plain, mine

    def quiet(data):
        return b"".join(line for line in data.splitlines(True) if not NOTICE.match(line))
    return quiet(plain), quiet(mine)


def deliberate(name, cluster, plain):
    """The slm variant's marker lines, given plain sbatch's: the deliberate differences.

    - TERM (and INT, HUP) reach the whole tree: on cgroup clusters Slurm's
      cancel or time limit reaches the script alone and its children die by
      SIGKILL KillWait later; slm gives them a graceful stop.  Where Slurm
      signals every process itself for those (linuxproc, or cgroup with
      SignalChildrenProcesses=yes), slm adds nothing: each process gets one
      TERM, as with plain sbatch.  A TERM Slurm sends to the batch script alone
      by request (`scancel -b -s TERM`, `--signal=B:TERM@T`) reaches the tree
      in every mode.
    - `scancel -f --signal=S` signals the script's process group (in every
      mode, SignalChildrenProcesses=yes too: measured on 26.05); slm's child
      runs in a process group of its own, so only the script gets S.
    """
    lines = list(plain)
    if name in ("scancel-term-traps", "time-limit") and not cluster.signals_tree:
        lines.append("child TERM")
    if name in ("scancel-b-term", "signal-B-term"):
        lines.append("child TERM")
    if name == "scancel-f-usr1":
        lines.remove("child USR1")
    return lines


# ---------------------------------------------------------------------------
# Submitting both variants
# ---------------------------------------------------------------------------


def job_state(job_id):
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode()
    return out.split()[0] if out.split() else None


class Accounting(object):
    """sacct, from slurmdbd when it runs, else jobcomp/filetxt (`sacct -c`)."""

    def __init__(self):
        r = subprocess.run(["sacct", "-n", "-X", "-j", "1", "-o", "jobid"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.jobcomp = r.returncode != 0
        self.how = "sacct -c (jobcomp/filetxt)" if self.jobcomp else "sacct (slurmdbd)"

    def rows(self, job_id):
        cmd = ["sacct", "-n", "-P", "-j", job_id, "-o", "jobid,state,exitcode"]
        r = subprocess.run(cmd + (["-c"] if self.jobcomp else []), stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        rows = [line.split("|") for line in r.stdout.decode().splitlines() if line.strip()]
        return [(re.sub(r"^%s" % job_id, "J", row[0]), row[1], row[2]) for row in rows
                if len(row) == 3 and row[0].split(".")[0].split("_")[0] == job_id]


class Variant(object):
    def __init__(self, scenario, kind, root, env):
        self.scenario = scenario
        self.kind = kind                       # "plain" | "slm"
        self.dir = os.path.join(root, scenario.name, kind)
        os.makedirs(self.dir)
        for name, data in scenario.inputs.items():
            path = os.path.join(self.dir, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        self.env = env
        self.job_id = None
        self.acted = False
        self.proc = None
        self.submitted = None                  # (exit status, stdout)
        self.result = None

    def command(self, script):
        words = list(self.scenario.sbatch)
        if not any(w in ("-o", "-e") or w.startswith(("--output", "--error")) for w in words):
            words = ["-o", "out.txt", "-e", "err.txt"] + words
        if script and not self.scenario.stdin_script:
            words += [script] + self.scenario.args
        head = ["sbatch"] if self.kind == "plain" else [MAIN_PYTHON, SLM, "submit"]
        return head + words

    def submit(self, script):
        stdin = open(script, "rb") if self.scenario.stdin_script else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command(script), cwd=self.dir, env=self.env,
                                     stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        if stdin is not subprocess.DEVNULL:
            stdin.close()
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self):
        out, err = self.proc.communicate()
        self.submitted = (self.proc.returncode, out.decode(errors="replace"),
                          err.decode(errors="replace"))
        # the driver acts on it at once, not when the module's await reaches this variant
        m = re.search(r"Submitted batch job (\d+)", self.submitted[1])
        if m and self.job_id is None:
            self.job_id = m.group(1)

    def await_job_id(self, deadline):
        while self.job_id is None:
            if self.submitted is not None:
                m = re.search(r"Submitted batch job (\d+)", self.submitted[1])
                assert m, "%s %s: sbatch said %r" % (self.scenario.name, self.kind,
                                                   self.submitted)
                self.job_id = m.group(1)
                break
            found = self._job_id_from_queue()
            if found:
                self.job_id = found
                break
            assert time.time() < deadline, "%s %s: no job id" % (self.scenario.name, self.kind)
            time.sleep(POLL)
        return self.job_id

    def _job_id_from_queue(self):
        # `sbatch --wait` prints its id at once but exits only with the job: ask squeue
        if "--wait" not in self.scenario.sbatch:
            return None
        out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i %Z"],
                             stdout=subprocess.PIPE).stdout.decode()
        for line in out.splitlines():
            words = line.split()
            if len(words) == 2 and words[1] == self.dir:
                return words[0]
        return None

    def marker(self):
        try:
            with open(os.path.join(self.dir, "marker"), "rb") as f:
                return f.read()
        except OSError:
            return b""

    def done(self):
        check = self.scenario.done
        if callable(check):
            return check(self.dir)
        return check.encode() in self.marker()

    def files(self):
        """Every file the job left in its directory, normalized, with its bytes."""
        found = {}
        for top, dirs, names in os.walk(self.dir):
            for name in names:
                path = os.path.join(top, name)
                rel = os.path.relpath(path, self.dir)
                if rel in ("job",) or rel in self.scenario.inputs:
                    continue
                with open(path, "rb") as f:
                    found[self.normalize(rel)] = self.normalize(f.read())
        return found

    def normalize(self, data):
        """What differs between any two jobs: their ids, directories, times and pids."""
        text = data if isinstance(data, str) else data.decode("utf-8", "surrogateescape")
        if self.job_id:
            # not in a variable that happens to hold the same number (PIP_DEFAULT_TIMEOUT=180;
            # 22.05's SLURM_WORKING_CLUSTER=local:localhost:6817:9728:109 ends in cons_tres's
            # plugin id, which job 109 shared)
            text = "".join(line if re.match(r"(?!SLURM_|SLM_)[A-Za-z_][A-Za-z0-9_]*=|"
                                            r"SLURM_WORKING_CLUSTER=", line)
                           else re.sub(r"\b%s\b" % self.job_id, "<JOB>", line)
                           for line in text.splitlines(True))
        text = text.replace(self.dir, "<DIR>")
        # 26.05's slurmstepd stamps its lines: "[2026-12-07T12:41:18.341] error: ..."
        text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?", "<TIME>", text)
        text = re.sub(r"(?m)^(SLURM_TASK_PID|SLURM_JOB_START_TIME|SLURM_JOB_END_TIME)=\d+$",
                      r"\1=<N>", text)
        # 26.05: the job's Slurm-wide unique id, one per job like its number
        text = re.sub(r"(?m)^SLURM_JOB_SLUID=s[0-9A-Z]{13}$", "SLURM_JOB_SLUID=<SLUID>", text)
        return text if isinstance(data, str) else text.encode("utf-8", "surrogateescape")


class Pairs(object):
    """Every scenario of the module, submitted at once, both ways."""

    def __init__(self, cluster, sink):
        self.mode = cluster.mode
        self.sink = sink
        self.accounting = Accounting()
        root = os.path.join(cluster.workdir, "transparency")
        home = os.path.join(root, "home")
        os.makedirs(os.path.join(home, ".slm"))
        config = os.path.join(home, ".slm", "config")
        with open(config, "w") as f:   # the settings, for both variants: same environment
            f.write("# slm settings for the differential suite\nSLM_API_URL=%s\n"
                    "SLM_SPOOL_DIR=%s\nSLM_TIMEOUT=5\n" % (sink.url, os.path.join(root, "spool")))
        os.chmod(config, 0o600)
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("SLURM_", "SLM_", "SBATCH_", "PYTEST_"))}
        base.update(HOME=home, LANG="C.UTF-8", PYTHONDONTWRITEBYTECODE="1")
        self.pairs = {}
        for scenario in SCENARIOS:
            env = dict(base, **scenario.env)
            if scenario.secrets:   # a token-protected service and a webhook, from the environment
                env.update(SLM_API_TOKEN=TOKEN, SLM_WEBHOOK="%s/hook/%s" % (sink.url, HOOK_SECRET))
            pair = [Variant(scenario, kind, root, env) for kind in ("plain", "slm")]
            script = None
            if scenario.script is not None:
                script = os.path.join(root, scenario.name, "job")
                with open(script, "w") as f:
                    f.write(scenario.script)
                os.chmod(script, 0o755)
            for variant in pair:
                variant.submit(script)
            self.pairs[scenario.name] = pair
        self._stop = threading.Event()
        self.errors = []
        self._driver = threading.Thread(target=self._drive, daemon=True)
        self._driver.start()
        deadline = time.time() + 120
        for pair in self.pairs.values():
            for variant in pair:
                variant.await_job_id(deadline)

    def _drive(self):
        """Perform each scenario's action as soon as its job is ready."""
        while not self._stop.is_set():
            for pair in self.pairs.values():
                for variant in pair:
                    if variant.scenario.act and not variant.acted and variant.job_id and \
                            b"ready" in variant.marker():
                        variant.acted = True
                        threading.Thread(target=self._act, args=(variant,),
                                         daemon=True).start()
            self._stop.wait(POLL)

    def _act(self, variant):
        try:
            variant.scenario.act(self, variant)
        except BaseException as e:   # reported by the scenario's test
            self.errors.append((variant.scenario.name, variant.kind, repr(e)))

    def result(self, variant, deadline):
        """Await the job's own end (its marker), then Slurm's record of it."""
        if variant.result is not None:
            return variant.result
        name = "%s %s (job %s)" % (variant.scenario.name, variant.kind, variant.job_id)
        while not variant.done():
            assert not self.failures(variant)
            assert time.time() < deadline, "%s: not done; marker %r, state %s" % (
                name, variant.marker(), job_state(variant.job_id))
            time.sleep(POLL)
        while True:
            rows = self.accounting.rows(variant.job_id)
            if rows and all(r[1].split()[0] in FINAL for r in rows) and \
                    (self.accounting.jobcomp or any(r[0].endswith(".batch") for r in rows)):
                break
            assert time.time() < deadline, "%s: no final record in %s: %r" % (
                name, self.accounting.how, rows)
            time.sleep(POLL)
        # a cancelled job's end is recorded before its traps finish: let the files settle
        settled, last = time.time() + 1.0, None
        while True:
            files = variant.files()
            if files != last:
                last, settled = files, time.time() + 1.0
            elif time.time() >= settled:
                break
            time.sleep(POLL)
        if variant.submitted is None:
            variant._reader.join(max(0.0, deadline - time.time()))
        assert not self.failures(variant)
        assert not variant.scenario.act or variant.acted, "%s: never ready" % name
        variant.result = {"sacct": rows, "files": files, "submitted": variant.submitted}
        return variant.result

    def failures(self, variant):
        return [e for e in self.errors if e[:2] == (variant.scenario.name, variant.kind)]

    def events(self, job_id):
        return [e for e in self.sink.events
                if e.get("job_id") == job_id or e.get("array_job_id") == job_id
                or str(e.get("job_id", "")).startswith(job_id + "_")]

    def close(self):
        self._stop.set()
        for pair in self.pairs.values():
            for variant in pair:
                if variant.job_id:
                    subprocess.run(["scancel", variant.job_id], stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def pairs(cluster):
    sink = Sink()
    made = Pairs(cluster, sink)
    yield made
    made.close()
    sink.close()


def test_sacct_is_the_record(pairs, cluster):
    """Says which accounting the comparisons read (slurmdbd is the real thing)."""
    print("proctrack/%s: Slurm's record from %s" % (cluster.mode, pairs.accounting.how))


# ---------------------------------------------------------------------------
# The comparisons
# ---------------------------------------------------------------------------


def lines_of(data):
    return data.decode("utf-8", "surrogateescape").splitlines()


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_same_as_plain_sbatch(pairs, cluster, name):
    scenario = BY_NAME[name]
    plain, slm = pairs.pairs[name]
    deadline = time.time() + DEADLINE
    expected, got = pairs.result(plain, deadline), pairs.result(slm, deadline)

    def record(rows):
        return [(job, "either" if job.endswith(".batch") and state in scenario.batch_states
                 else state, code) for job, state, code in rows]
    assert record(got["sacct"]) == record(expected["sacct"]), "Slurm's record differs"
    assert got["submitted"][0] == expected["submitted"][0], "exit status of the submission"
    assert slm.normalize(got["submitted"][1]) == plain.normalize(expected["submitted"][1])
    files, theirs = dict(got["files"]), dict(expected["files"])
    special = globals().get("check_" + name.replace("-", "_"))
    if special:
        special(pairs, plain, slm, files, theirs)
    marker, plain_marker = files.pop("marker", b""), theirs.pop("marker", b"")
    assert sorted(files) == sorted(theirs), "the files the job left"
    for key in theirs:
        if key.startswith("err"):
            theirs[key], files[key] = deliberate_stderr(scenario, theirs[key], files[key])
        assert files[key] == theirs[key], "%s differs" % key
    want = deliberate(name, cluster, lines_of(plain_marker))
    seen = "slm's job saw %r, plain sbatch's %r" % (lines_of(marker), lines_of(plain_marker))
    if scenario.ordered:
        assert lines_of(marker) == want, seen
    else:
        assert collections.Counter(lines_of(marker)) == collections.Counter(want), seen
    events = pairs.events(slm.job_id)
    statuses = [e["status"] for e in events]
    assert "SUBMITTED" in statuses and "RUNNING" in statuses, statuses
    assert any(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for s in statuses), statuses


def environment(text):
    return dict(line.split("=", 1) for line in lines_of(text) if "=" in line)


def check_env(pairs, plain, slm, files, theirs):
    """env | sort: the same, but for slm's own SLM_* (and the per-job ids, normalized)."""
    mine, plain_env = environment(files.pop("env.txt")), environment(theirs.pop("env.txt"))
    own = {k: mine.pop(k) for k in SLM_OWN if k in mine}
    assert own.get("SLM_JOB_ID") == "<JOB>" and own.get("SLM_ACTIVE") == "<JOB>", own
    assert own.get("SLM_SETTINGS", "").startswith("/"), own
    for key in sorted(set(mine) | set(plain_env)):
        assert mine.get(key) == plain_env.get(key), key
    assert "LC_CTYPE" not in mine or "LC_CTYPE" in plain_env
    check_settings_travel(pairs, slm)


check_export_none = check_export_vars = check_sbatch_export_env = check_env


def check_settings_travel(pairs, slm):
    """The job's events reached the token-protected service and the webhook,
    whatever its environment; no secret is where others can read it."""
    events = pairs.events(slm.job_id)
    assert sorted(e["status"] for e in events if e["status"] == "COMPLETED") == ["COMPLETED"] * 2
    for path, headers, body, status in pairs.sink.requests:
        batch = body.get("events", [body]) if isinstance(body, dict) else []
        if any(e.get("job_id") == slm.job_id for e in batch) and path == "/api/v1/events":
            assert headers.get("Authorization") == "Bearer " + TOKEN
    hooked = [body.get("status") for path, headers, body, status in pairs.sink.requests
              if path == "/hook/" + HOOK_SECRET and isinstance(body, dict)
              and body.get("job_id") == slm.job_id]
    assert "RUNNING" in hooked and "COMPLETED" in hooked, hooked
    shown = subprocess.run(["scontrol", "show", "job", slm.job_id], stdout=subprocess.PIPE
                           ).stdout.decode()
    batch = subprocess.run(["scontrol", "write", "batch_script", slm.job_id, "-"],
                           stdout=subprocess.PIPE).stdout.decode()
    assert "slm.run_submitted" in batch
    for secret in (TOKEN, HOOK_SECRET):
        assert secret not in shown and secret not in batch
        for name, content in slm.files().items():
            if name != "env.txt":   # the script printed its environment, the user's choice
                assert secret.encode() not in content, name


def check_dollar_0(pairs, plain, slm, files, theirs):
    """$0: both are copies of the script; sbatch's is slurmd's slurm_script,
    slm's a private copy named after the script (deliberate, README)."""
    plain_0 = lines_of(theirs["marker"])[0]
    mine_0 = lines_of(files["marker"])[0]
    assert plain_0.endswith("/slurm_script")
    assert re.search(r"/slm\.<JOB>\.\w+/job$", mine_0), mine_0
    files["marker"] = theirs["marker"]


def check_sbatch_wait(pairs, plain, slm, files, theirs):
    """sbatch --wait: same exit status (checked for all); SUBMITTED is recorded
    while the job runs (go_once_submitted awaited it), not when it has ended."""
    events = pairs.events(slm.job_id)
    order = [e["status"] for e in events]
    assert order.index("SUBMITTED") < order.index("FAILED"), order
    times = {e["status"]: e["time"] for e in events}
    assert times["SUBMITTED"] <= times["FAILED"], times


def check_suspend_resume(pairs, plain, slm, files, theirs):
    """Both scripts' progress shows the same pause (the ticks themselves differ)."""
    for found in (files, theirs):
        ticks = [int(t) / 1e9 for t in lines_of(found.pop("marker.ticks"))]
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        assert max(gaps) > 2.0, gaps


def check_time_limit(pairs, plain, slm, files, theirs):
    events = pairs.events(slm.job_id)
    assert [e["status"] for e in events][-2:] == ["TERMINATING", "TIMEOUT"], events
