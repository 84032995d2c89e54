"""The chaos benchmark's scenario families R1-R8: each a function (rng, Trial) -> (kinds, note).

Every scenario drives real `vinemake` and `vinemake-worker` processes on 127.0.0.1 in its
trial's directory and judges what it sees against what the README and docs promise; the
harness (chaoskit) adds tracebacks, hangs and changes outside the workflow directory. A family
takes options (`modes`) choosing which of its variants it draws from, so the CI test can run
exactly the variants whose fixes have landed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import psutil
from chaoskit import VINEMAKE, WORKER, Trial, read, session_gone, snapshot, wait_until

from vinemake.common.names import quoted
from vinemake.wire import protocol as p

Result = tuple[set[str], str]
LOCATED = re.compile(r"^\S[^\n]*?:\d+:\d+: ", re.M)


class Variants:
    """A family's variants: drawn at random, or (`in_turn`, for CI) each in turn."""

    def __init__(self, names, in_turn: bool = False):
        self.names, self.in_turn, self._next = tuple(names), in_turn, 0

    def pick(self, rng):
        if not self.in_turn:
            return rng.choice(self.names)
        name = self.names[self._next % len(self.names)]
        self._next += 1
        return name


def ran_nothing(err: str) -> bool:
    return bool(re.search(r"vinemake: ran 0, ", err)) or "nothing to do" in err


# -- R1: kill -9 of vinemake at random moments, then rerun -------------------------------------

R1_SRC = "alpha beta\ngamma delta\n"
R1_VINEFILE = """\
a.txt: src.txt
\tsleep 0.3; tr a-z A-Z < src.txt > a.txt
b.txt: src.txt
\tLOCAL echo begin > b.txt; sleep 0.4; cat src.txt >> b.txt; echo end >> b.txt
c.txt: a.txt b.txt
\tsleep 0.2; cat a.txt b.txt > c.txt
d.txt: c.txt
\tLOCAL sleep 0.3; wc -c < c.txt > d.txt
whole: c.txt
\tmkdir whole; sleep 0.2; cp c.txt whole/one.txt; sort c.txt > whole/two.txt
e.txt: whole d.txt
\tcat whole/one.txt d.txt > e.txt
"""
R1_TARGETS = ("a.txt", "b.txt", "c.txt", "d.txt", "whole", "e.txt")


def _r1_expected() -> dict[str, bytes]:
    up = R1_SRC.upper()
    b = "begin\n" + R1_SRC + "end\n"
    c = up + b
    d = f"{len(c.encode())}\n"
    two = "".join(sorted(c.splitlines(keepends=True)))
    return {"a.txt": up.encode(), "b.txt": b.encode(), "c.txt": c.encode(), "d.txt": d.encode(),
            "whole": f"one.txt={c}\ntwo.txt={two}".encode(), "e.txt": (c + d).encode()}


R1_EXPECTED = _r1_expected()
R1_WALL_S = 3.0  # about a clean build's length here: kills land before, during and after


def r1_kill_vinemake(rng, t: Trial) -> Result:
    """Kill -9 vinemake (once or twice) at random moments; the rerun must equal a clean build."""
    (t.wf / "src.txt").write_text(R1_SRC)
    (t.wf / "Vinefile").write_text(R1_VINEFILE)
    moments = []
    for _ in range(rng.choice([1, 1, 2])):
        proc = t.spawn([*VINEMAKE, "-j", "2"])
        moment = rng.uniform(0.05, R1_WALL_S)
        moments.append(round(moment, 2))
        time.sleep(moment)
        proc.send_signal(signal.SIGKILL)
        t.wait(proc)
        if not wait_until(lambda sid=proc.pid: session_gone(sid), 20):
            return {"hang"}, f"after kill at {moments}: a process of the killed run outlived it"
        for name, got in snapshot(t.wf, R1_TARGETS).items():
            if got is not None and got != R1_EXPECTED[name]:
                return {"half"}, f"after kill at {moments}: {name} = {got[:80]!r}"
    rerun = t.vinemake("-j", "2")
    if rerun.code != 0:
        return {"wrong"}, f"rerun after kill at {moments} exit {rerun.code}: {rerun.err[-300:]}"
    got = snapshot(t.wf, R1_TARGETS)
    if got != R1_EXPECTED:
        bad = [n for n in R1_TARGETS if got[n] != R1_EXPECTED[n]]
        return {"wrong"}, f"after kill at {moments}: {bad} differ from a clean build"
    again = t.vinemake()
    if again.code != 0 or not ran_nothing(again.err):
        return {"wrong"}, f"after kill at {moments}: a third run did work: {again.err[-200:]}"
    return set(), f"killed at {moments} s"


# -- R2: kill -9 and SIGSTOP of workers ---------------------------------------------------------

R2_RULES = 8
R2_VINEFILE = "".join(f"o{i}.txt:\n\tsleep 0.6; echo {i} > o{i}.txt\n" for i in range(R2_RULES)) \
    + "all.txt: " + " ".join(f"o{i}.txt" for i in range(R2_RULES)) \
    + "\n\tcat " + " ".join(f"o{i}.txt" for i in range(R2_RULES)) + " > all.txt\n"
R2_EXPECTED = "".join(f"{i}\n" for i in range(R2_RULES)).encode()


def start_workers_manager(t: Trial, *extra: str) -> tuple[subprocess.Popen, int | None]:
    """`vinemake -T workers` in the trial's workflow; its port once it listens (None: never)."""
    proc = t.spawn([*VINEMAKE, "-T", "workers", "--port-file", "port", *extra])
    port_file = t.wf / "port"
    if not wait_until(lambda: proc.poll() is not None or (
            port_file.exists() and port_file.read_text().strip()), 30):
        return proc, None
    return proc, int(port_file.read_text()) if port_file.exists() else None


def worker(t: Trial, port: int, name: str, *extra: str) -> subprocess.Popen:
    return t.spawn([*WORKER, "127.0.0.1", str(port), "--workdir", str(t.scratch / f"w-{name}"),
                    "--name", name, "--cores", "1", "--memory", "500", "--disk", "500",
                    "--timeout", "120", *extra])


def _running_command(pid: int) -> bool:
    """Is worker `pid` running a command (a `sleep` below it)?"""
    try:
        return any(c.name() == "sleep" for c in psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return False


def r2_workers(modes=("kill", "stop"), in_turn=False):
    modes = Variants(modes, in_turn)

    def scenario(rng, t: Trial) -> Result:
        """Two workers; one is killed -9 or stopped mid-run: the run finishes, outputs right."""
        (t.wf / "Vinefile").write_text(R2_VINEFILE)
        manager, port = start_workers_manager(t)
        if port is None:
            return {"wrong"}, "the manager never listened"
        workers = [worker(t, port, f"w{i}") for i in range(2)]
        mode, victim = modes.pick(rng), rng.randrange(2)
        time.sleep(rng.uniform(0.2, 1.5))
        # Struck while running a command, so its task must be lost and run elsewhere.
        busy = wait_until(lambda: _running_command(workers[victim].pid), 10)
        os.kill(workers[victim].pid, signal.SIGKILL if mode == "kill" else signal.SIGSTOP)
        done = t.wait(manager, timeout=60 + 90 if mode == "stop" else None)
        note = f"{mode} of w{victim}{' mid-command' if busy else ''}"
        if done.code != 0:
            return {"wrong"}, f"{note}: exit {done.code}: {done.err[-300:]}"
        if read(t.wf / "all.txt") != R2_EXPECTED:
            return {"wrong"}, f"{note}: all.txt = {read(t.wf / 'all.txt')!r}"
        return set(), note
    return scenario


# -- R3: mutated Vinefiles and JX files ---------------------------------------------------------

R3_VINEFILE = """\
N = 3
export GREETING=hello
CATEGORY = small
CORES = 1
@resources cores=1 memory=100MB
a.txt: src.txt
\techo $(GREETING) > a.txt; cat src.txt >> a.txt
CATEGORY = big
b.txt c.txt: a.txt
\tLOCAL cp a.txt b.txt; wc -l < a.txt > c.txt
@temp
t.txt: b.txt->in.txt
\tcat in.txt > t.txt
final.txt: t.txt c.txt
\tcat t.txt c.txt > final.txt
"""
R3_JX = """\
{
    "define": {"N": 3, "PARTS": [format("p%d.txt", i) for i in range(N)]},
    "categories": {"small": {"resources": {"cores": 1, "memory": 100}}},
    "rules": [
        {"command": format("echo %d > p%d.txt", i, i), "outputs": [format("p%d.txt", i)],
         "category": "small"} for i in range(N),
        {"command": "cat " + join(PARTS) + " src.txt > all.txt",
         "inputs": PARTS + ["src.txt"], "outputs": ["all.txt"]},
    ],
}
"""
R3_PIECES = [":", "=", "$(", ")", "{", "}", "[", "]", '"', "'", "\\", "\n", "\t", " ", "#",
             "@", "->", ">", ",", "for", "in", "range(", "LOCAL ", "@temp\n", "@retries 2\n",
             "@resources cores=", "CORES=", "4G", "é", "\x00", "\r\n", "x.txt", "..", "/",
             "format(", "template(", "0", "-1", "1e99", "null", "true", "\ufeff"]


def mutate(rng, text: str) -> bytes:
    """One to three random edits: spans cut, pieces inserted, lines doubled, dropped, swapped."""
    for _ in range(rng.randint(1, 3)):
        lines = text.split("\n")
        op = rng.randrange(6)
        i = rng.randrange(len(text) + 1)
        if op == 0:
            text = text[:i] + text[i + rng.randint(1, 12):]
        elif op == 1:
            text = text[:i] + rng.choice(R3_PIECES) + text[i:]
        elif op == 2 and lines:
            j = rng.randrange(len(lines))
            lines.insert(j, lines[j])
            text = "\n".join(lines)
        elif op == 3 and len(lines) > 1:
            del lines[rng.randrange(len(lines))]
            text = "\n".join(lines)
        elif op == 4 and len(lines) > 1:
            a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
        else:
            text = text[:i]
    data = text.encode()
    if rng.random() < 0.05:
        k = rng.randrange(len(data) + 1)
        data = data[:k] + b"\xff" + data[k:]
    return data


def r3_mutated(rng, t: Trial) -> Result:
    """A mutated workflow parses and runs: exit 2 with a located error and nothing written, or
    a run that ends (0, or 1 with its summary)."""
    jx = rng.random() < 0.4
    name = "wf.jx" if jx else "Vinefile"
    data = mutate(rng, R3_JX if jx else R3_VINEFILE)
    (t.wf / "src.txt").write_text("one\ntwo\n")
    (t.wf / name).write_bytes(data)
    before = sorted(os.listdir(t.wf))
    done = t.vinemake(name, timeout=60)
    shown = data[:2000].decode(errors="replace")
    if done.code == 2:
        if not LOCATED.search(done.err):
            return {"wrong"}, f"exit 2 without a located error: {done.err[:300]!r} for {shown!r}"
        made = sorted(set(os.listdir(t.wf)) - set(before) - {".vinemake"})
        if made:
            return {"half"}, f"exit 2 but wrote {made} for {shown!r}"
        return set(), f"exit 2: {done.err.splitlines()[0][:100]}"
    if done.code == 0 or (done.code == 1 and "vinemake: ran " in done.err):
        return set(), f"exit {done.code}"
    return {"wrong"}, f"exit {done.code}: {done.err[-300:]!r} for {shown!r}"


# -- R4: failing, over-memory, over-disk, over-time rules ---------------------------------------

R4_NAMES = ["out.txt", "数" * 60 + ".txt", "n" * 250 + ".txt", "sub/dir/x.txt"]


def _r4_rule(rng, mode: str, target: str) -> tuple[str, str, str]:
    """(annotation + rule text, the status expected, the start of the reason expected)."""
    mk = f"mkdir -p {os.path.dirname(target)}; " if "/" in target else ""
    if mode == "fail":
        code = rng.randint(1, 120)
        return f"{target}:\n\t{mk}echo half > {target}; exit {code}\n", "failed", \
            f"exit code {code}"
    if mode == "local-fail":
        code = rng.randint(1, 120)
        return f"{target}:\n\tLOCAL {mk}echo half > {target}; exit {code}\n", "failed", \
            f"exit code {code}"
    if mode == "memory":
        mb = rng.randint(150, 300)
        return (f"@resources memory=50MB\n{target}:\n\t{mk}echo half > {target}; python3 -c "
                f"\"import time; b = b'x' * {mb}_000_000; time.sleep(2)\"; echo x > {target}\n",
                "resource_exceeded", "memory:")
    if mode == "spike":  # the item 18: a spike shorter than any sampling interval
        mb = rng.randint(150, 300)
        return (f"@resources memory=50MB\n{target}:\n\t{mk}echo half > {target}; python3 -c "
                f"\"b = b'x' * {mb}_000_000\"; echo x > {target}\n",
                "resource_exceeded", "memory:")
    if mode == "disk":
        mb = rng.randint(8, 40)
        return (f"@resources disk=2MB\n{target}:\n\t{mk}head -c {mb}000000 /dev/zero > {target}; "
                f"sleep 2\n", "resource_exceeded", "disk:")
    return (f"@resources wall_time=1s\n{target}:\n\t{mk}echo half > {target}; sleep 30\n",
            "resource_exceeded", "wall time:")


def _r4_too_big(rng, t: Trial, mode: str, target: str) -> Result:
    """More cores than this machine's worker offers: exit 2 naming the rule, nothing run."""
    cores = rng.choice([64, 1000] if mode == "too-big" else [10**6, 123456789])
    (t.wf / "Vinefile").write_text(f"ok.txt:\n\techo ok > ok.txt\n@resources cores={cores}\n"
                                   f"{target}:\n\techo x > {target}\n")
    done = t.vinemake("-k")
    why = []
    if done.code != 2 or f"needs cores {cores} but the largest worker offers" not in done.err:
        why.append(f"exit {done.code}: {done.err[-200:]!r}")
    if os.path.lexists(t.wf / "ok.txt") or os.path.lexists(t.wf / target):
        why.append("a rule ran")
    return ({"wrong"} if why else set()), f"{mode} cores={cores}: {'; '.join(why)}"


def r4_resources(modes=("fail", "local-fail", "memory", "spike", "disk", "time", "too-big",
                        "too-big-huge"), in_turn=False):
    modes = Variants(modes, in_turn)

    def scenario(rng, t: Trial) -> Result:
        """A failing or over-limit rule beside a good one under -k: exit 1, the right status and
        reason in its INFO record, nothing at its target path, the good one made (a rule bigger
        than any worker: exit 2 before anything runs)."""
        mode, target = modes.pick(rng), rng.choice(R4_NAMES)
        if mode.startswith("too-big"):
            return _r4_too_big(rng, t, mode, target)
        rule, status, reason = _r4_rule(rng, mode, target)
        (t.wf / "Vinefile").write_text("ok.txt:\n\techo ok > ok.txt\n" + rule)
        done = t.vinemake("-k")
        note = f"{mode} {target[:20]}"
        kinds, why = set(), []
        if os.path.lexists(t.wf / target):
            kinds.add("half")
            why.append(f"{target[:20]} left at its path")
        info = read(t.wf / ".vinemake" / "failed" / quoted(target) / "INFO")
        text = info.decode(errors="replace") if info else ""
        if done.code != 1:
            kinds.add("wrong")
            why.append(f"exit {done.code}")
        if f"status: {status}\n" not in text or f"reason: {reason}" not in text:
            kinds.add("wrong")
            why.append(f"INFO: {text[:200]!r}" if info else "no INFO record")
        if read(t.wf / "ok.txt") != b"ok\n":
            kinds.add("wrong")
            why.append("ok.txt not made")
        return kinds, f"{note}: {'; '.join(why)}"
    return scenario


# -- R5: every clean mode against hand edits, links, shared caches, two workflows --------------

R5_A = """\
mid.txt: src.txt
\ttr a-z A-Z < src.txt > mid.txt
final.txt: mid.txt
\tcp mid.txt final.txt
whole: src.txt
\tmkdir whole; cp src.txt whole/w.txt; echo v > whole/v.txt
"""
R5_B = "other.txt: src.txt\n\tsort src.txt > other.txt\n"
R5_OUTS = ("mid.txt", "final.txt", "whole")
R5_CLEAN = ("all", "outputs", "intermediates", "cache")
R5_EDITS = ("mid", "final", "inside", "link", "user-file", "none")


def r5_clean(edits=R5_EDITS, stores=(True, False), in_turn=False):
    edits = Variants(edits, in_turn)

    def scenario(rng, t: Trial) -> Result:
        return _r5_clean(rng, t, edits.pick(rng), rng.choice(stores))
    return scenario


def _r5_clean(rng, t: Trial, edit: str, shared: bool) -> Result:
    """Build two workflows in one directory and a third elsewhere (with a shared --cache-dir or
    not), edit by hand, clean one: nothing it did not make goes, the store stays, the others'
    outputs stay, and a rebuild gives what the first build gave."""
    cache, other = t.scratch / "cache", t.scratch / "wf2"
    other.mkdir()
    for d in (t.wf, other):
        (d / "src.txt").write_text("b\na\nc\n")
    (t.wf / "Vinefile").write_text(R5_A)
    (t.wf / "B.vf").write_text(R5_B)
    (other / "Vinefile").write_text(R5_A)
    cache_args = ["--cache-dir", str(cache)] if shared else []
    for args, cwd in [(["Vinefile"], t.wf), (["B.vf"], t.wf), (["Vinefile"], other)]:
        built = t.vinemake(*args, *cache_args, cwd=cwd)
        if built.code != 0:
            return {"wrong"}, f"build {args} in {cwd.name}: exit {built.code}: {built.err[-200:]}"
    reference = snapshot(t.wf, R5_OUTS)
    mode = rng.choice(R5_CLEAN)
    keep = {"src.txt": b"b\na\nc\n", "B.vf": R5_B.encode(), "Vinefile": R5_A.encode(),
            "other.txt": b"a\nb\nc\n"}
    if edit in ("mid", "final"):
        with open(t.wf / f"{edit}.txt", "a") as f:
            f.write("edited by hand\n")
        keep[f"{edit}.txt"] = read(t.wf / f"{edit}.txt")
    elif edit == "inside":
        with open(t.wf / "whole" / "w.txt", "a") as f:
            f.write("edited by hand\n")
        keep["whole/w.txt"] = read(t.wf / "whole" / "w.txt")
    elif edit == "link":
        os.remove(t.wf / "final.txt")
        os.symlink(t.outside / "data.txt", t.wf / "final.txt")
    elif edit == "user-file":
        (t.wf / "whole" / "mine.txt").write_text("mine\n")
        keep["whole/mine.txt"] = b"mine\n"
    store_before = sorted(str(q.relative_to(cache)) for q in cache.rglob("*") if q.is_file()) \
        if shared else []
    cleaned = t.vinemake("Vinefile", f"--clean={mode}", *cache_args)
    note = f"edit {edit}, --clean={mode}{' with a shared store' if shared else ''}"
    kinds, why = set(), []
    if cleaned.code != 0:
        kinds.add("wrong")
        why.append(f"clean exit {cleaned.code}: {cleaned.err[-200:]}")
    for name, data in keep.items():
        if read(t.wf / name) != data:
            kinds.add("wrong")
            why.append(f"{name} removed or changed")
    if edit == "link" and not os.path.islink(t.wf / "final.txt"):
        kinds.add("wrong")
        why.append("the user's link final.txt removed")
    if shared:
        entries = [q for q in store_before if not (cache / q).exists()]
        if entries:
            kinds.add("wrong")
            why.append(f"{len(entries)} store entries removed")
    changed = [n for n, data in snapshot(other, R5_OUTS).items() if data != reference[n]]
    if changed:
        kinds.add("wrong")
        why.append(f"the other directory's {changed} changed")
    if mode == "all" and edit == "none" and any(
            os.path.lexists(t.wf / n) for n in R5_OUTS):
        kinds.add("wrong")
        why.append("--clean=all left an unedited output")
    rebuilt = t.vinemake("Vinefile", *cache_args)
    wrong = [n for n, data in snapshot(t.wf, R5_OUTS).items() if data != reference[n]]
    if rebuilt.code != 0 or wrong:
        kinds.add("wrong")
        why.append(f"the rebuild after the clean: exit {rebuilt.code}, {wrong} differ")
    return kinds, f"{note}: {'; '.join(why)}"


# -- R6: hostile frames, slow and oversized handshakes, wrong secrets, TLS mismatches ----------

R6_VINEFILE = "".join(f"h{i}.txt:\n\techo {i} > h{i}.txt\n" for i in range(3))
R6_ATTACKS = ("deep", "bad-hello", "garbage", "oversized", "flood", "slow", "wrong-secret",
              "plain-to-tls", "tls-to-plain", "joined-deep")
SECRET = "chaos-secret"


def _frame(payload: bytes) -> bytes:
    return struct.pack(">IB", len(payload), p.MSG) + payload


def _hello(rng) -> bytes:
    field, value = rng.choice([("resources", {"cores": "many"}), ("name", ["x"] * 3),
                               ("version", "v"), ("role", 7), ("resources", {"memory": -1}),
                               ("nonce", {"a": [1]}), ("resources", [1, 2])])
    body = {"t": "Hello", "version": p.VERSION, "role": "worker", "nonce": "n", field: value}
    return json.dumps(body).encode()


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def _send(port: int, data: bytes, tls: bool) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        s = raw
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            s = ctx.wrap_socket(raw)
        try:
            s.sendall(data)
        except OSError:
            return
        _drain(s)


def _attack(rng, t: Trial, attack: str, port: int, tls: bool, pw: Path) -> str | None:
    """Carry out one attack; a finding (the attack's own expectation broken) or None."""
    if attack == "deep":
        _send(port, _frame(b"[" * rng.choice([60_000, 100_000, 1_000_000])), tls)
    elif attack == "bad-hello":
        _send(port, _frame(_hello(rng)), tls)
    elif attack == "garbage":
        _send(port, rng.randbytes(rng.randint(1, 70_000)), tls)
    elif attack in ("oversized", "flood"):
        socks = []
        for _ in range(1 if attack == "oversized" else 100):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            try:
                s.sendall(struct.pack(">IB", 16 << 20, p.MSG) + bytes(2 << 20))
            except OSError:
                pass
            socks.append(s)
        for s in socks:
            _drain(s)
            s.close()
    elif attack == "slow":
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            data, sent, start = _frame(json.dumps({"t": "Hello", "x": "y" * 100}).encode()), 0, \
                time.monotonic()
            try:
                for byte in data:
                    s.send(bytes([byte]))
                    sent += 1
                    time.sleep(0.5)
            except OSError:
                pass
            if sent >= len(data) or time.monotonic() - start > 30:
                return f"a slow handshake was held {time.monotonic() - start:.0f} s"
    elif attack == "wrong-secret":
        bad = t.scratch / "wrong-pw"
        bad.write_text("not-the-secret\n")
        w = worker(t, port, "liar", "--password", str(bad), "--timeout", "5",
                   *(["--ssl"] if tls else []))
        done = t.wait(w, timeout=60)
        if done.code == 0:
            return "a worker with the wrong secret exited 0"
    elif attack in ("plain-to-tls", "tls-to-plain"):
        w = worker(t, port, "mismatch", "--password", str(pw), "--timeout", "5",
                   *(["--ssl"] if not tls else []))
        done = t.wait(w, timeout=60)
        if done.code == 0 or "TLS" not in done.err:
            return f"a TLS-mismatched worker: exit {done.code}, said {done.err[-200:]!r}"
    elif attack == "joined-deep":
        ctx = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        conn = p.connect("127.0.0.1", port, ctx)
        p.client_handshake(conn, p.new_hello("worker", name="deep", resources={"cores": 1}),
                           SECRET.encode())
        conn.send_raw(_frame(b"[" * 100_000))
        _drain(conn.sock)
    return None


def _tls_files(t: Trial) -> list[str]:
    key, crt = t.scratch / "m.key", t.scratch / "m.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=vinemake", "-keyout", str(key), "-out", str(crt)],
                   capture_output=True, check=True)
    return ["--ssl", "--ssl-cert", str(crt), "--ssl-key", str(key)]


def r6_hostile(modes=R6_ATTACKS, in_turn=False):
    modes = Variants(modes, in_turn)

    def scenario(rng, t: Trial) -> Result:
        """Attacks on a real manager (with a password, TLS half the time), then a real worker:
        the run finishes right, the manager's threads and memory stay bounded."""
        attack = modes.pick(rng)
        tls = attack == "plain-to-tls" or (attack != "tls-to-plain" and rng.random() < 0.5)
        pw = t.scratch / "pw"
        pw.write_text(SECRET + "\n")
        (t.wf / "Vinefile").write_text(R6_VINEFILE)
        extra = ["--password", str(pw), *(_tls_files(t) if tls else [])]
        manager, port = start_workers_manager(t, *extra)
        note = f"{attack}{' over TLS' if tls else ''}"
        if port is None:
            return {"wrong"}, f"{note}: the manager never listened"
        me = psutil.Process(manager.pid)
        threads, rss = me.num_threads(), me.memory_info().rss
        peak = [threads, rss]

        def watch():
            while manager.poll() is None:
                try:
                    peak[0] = max(peak[0], me.num_threads())
                    peak[1] = max(peak[1], me.memory_info().rss)
                except psutil.Error:
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        finding = _attack(rng, t, attack, port, tls, pw)
        kinds, why = set(), [finding] if finding else []
        if finding:
            kinds.add("wrong")
        worker(t, port, "good", "--password", str(pw), *(["--ssl"] if tls else []))
        done = t.wait(manager, timeout=90)
        watcher.join(timeout=5)
        if done.code != 0 or snapshot(t.wf, [f"h{i}.txt" for i in range(3)]) != {
                f"h{i}.txt": f"{i}\n".encode() for i in range(3)}:
            kinds.add("wrong")
            why.append(f"the run: exit {done.code}: {done.err[-200:]!r}")
        if peak[0] > threads + 20 or peak[1] - rss > 60 << 20:
            kinds.add("wrong")
            why.append(f"manager grew from {threads} threads, {rss >> 20} MB to "
                       f"{peak[0]} threads, {peak[1] >> 20} MB")
        return kinds, f"{note}: {'; '.join(why)}"
    return scenario


# -- R7: sandbox escapes ------------------------------------------------------------------------

R7_MODES = ("dotdot-target", "absolute-target", "link-parent", "link-made", "command-dotdot",
            "local-dotdot", "dotdot-source")


def r7_escape(modes=R7_MODES, in_turn=False):
    modes = Variants(modes, in_turn)

    def scenario(rng, t: Trial) -> Result:
        """Targets and commands that try to write outside the workflow directory: refused or
        kept inside; the sentinel tree beside it is hashed before and after."""
        mode = modes.pick(rng)
        out = t.outside
        good = "ok.txt:\n\techo ok > ok.txt\n"
        expect, ok_made = {"dotdot-target": 2, "absolute-target": 2, "link-parent": 2,
                           "link-made": 1}.get(mode, 0), mode in ("link-made", "command-dotdot",
                                                                  "local-dotdot", "dotdot-source")
        local = rng.choice(["", "LOCAL "])
        rules = {
            "dotdot-target": f"../outside/esc.txt:\n\t{local}echo x > ../outside/esc.txt\n",
            "absolute-target": f"{out}/abs.txt:\n\t{local}echo x > {out}/abs.txt\n",
            "link-parent": f"lnk/x:\n\t{local}echo x > x\n",
            "link-made": f"made:\n\tln -s {out} made\nmade/x: made\n\t{local}echo x > made/x\n",
            "command-dotdot": "esc.txt:\n\t" + "".join(
                f"echo x > {'../' * k}esc{k}.txt 2>/dev/null; " for k in range(1, 4))
                + "echo ok > esc.txt\n",
            "local-dotdot": "esc.txt:\n\tLOCAL echo x > ../esc-local.txt 2>/dev/null; "
                            "echo ok > esc.txt\n",
            "dotdot-source": f"copy.txt: ../outside/data.txt\n\t{local}cat ../outside/data.txt"
                             " > copy.txt\n",
        }
        if mode == "link-parent":
            os.symlink(out, t.wf / "lnk")
        (t.wf / "Vinefile").write_text(good + rules[mode])
        done = t.vinemake()
        note = f"{mode}{' LOCAL' if local else ''}"
        kinds, why = set(), []
        if done.code != expect:
            kinds.add("wrong")
            why.append(f"exit {done.code}, expected {expect}: {done.err[-300:]!r}")
        if expect == 2 and not LOCATED.search(done.err):
            kinds.add("wrong")
            why.append("no located error")
        if (read(t.wf / "ok.txt") == b"ok\n") != ok_made and expect != 1:
            kinds.add("wrong")
            why.append("ok.txt made although refused" if expect == 2 else "ok.txt not made")
        return kinds, f"{note}: {'; '.join(why)}"
    return scenario


# -- R8: concurrent runs, a deleted state directory, a full disk -------------------------------

R8_VINEFILE = "s0.txt:\n\tsleep 0.5; echo 0 > s0.txt\n" + "".join(
    f"s{i}.txt: s{i - 1}.txt\n\tsleep 0.5; echo {i} > s{i}.txt\n" for i in range(1, 5))
R8_EXPECTED = {f"s{i}.txt": f"{i}\n".encode() for i in range(5)}
R8_MODES = ("concurrent", "delete-state", "full-disk", "full-state")


def _r8_concurrent(rng, t: Trial) -> Result:
    (t.wf / "Vinefile").write_text(R8_VINEFILE)
    first = t.spawn([*VINEMAKE])
    time.sleep(rng.uniform(0, 1.5))
    second = t.spawn([*VINEMAKE])
    a, b = t.wait(first), t.wait(second)
    why = []
    codes = sorted([a.code, b.code])
    if codes not in ([0, 0], [0, 1]):
        why.append(f"exits {a.code}, {b.code}: {a.err[-150:]!r} {b.err[-150:]!r}")
    loser = b if b.code == 1 else a if a.code == 1 else None
    if loser is not None and str((first if loser is b else second).pid) not in loser.err:
        why.append(f"the refused run does not name the other's pid: {loser.err[-200:]!r}")
    if snapshot(t.wf, R8_EXPECTED) != R8_EXPECTED:
        why.append("outputs differ")
    return ({"wrong"} if why else set()), "concurrent: " + "; ".join(why)


def _r8_delete_state(rng, t: Trial) -> Result:
    (t.wf / "Vinefile").write_text(R8_VINEFILE)
    first = t.spawn([*VINEMAKE])
    wait_until(lambda: (t.wf / ".vinemake").exists(), 20)
    time.sleep(rng.uniform(0.2, 2.0))
    subprocess.run(["rm", "-rf", str(t.wf / ".vinemake")], check=False)
    why = []
    if first.poll() is None:
        second = t.vinemake()
        if first.poll() is None and second.code != 1:
            why.append(f"a second run started beside the first (exit {second.code})")
    done = t.wait(first)
    if done.code not in (0, 1):
        why.append(f"exit {done.code}: {done.err[-200:]!r}")
    rerun = t.vinemake()
    if rerun.code != 0 or snapshot(t.wf, R8_EXPECTED) != R8_EXPECTED:
        why.append(f"the rerun: exit {rerun.code}, outputs "
                   f"{'right' if snapshot(t.wf, R8_EXPECTED) == R8_EXPECTED else 'wrong'}")
    return ({"wrong"} if why else set()), "delete-state: " + "; ".join(why)


def _mount_tmpfs(where: Path, size_kb: int) -> bool:
    where.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs",
                           str(where)], capture_output=True).returncode == 0


def _r8_full(rng, t: Trial, state: bool) -> Result:
    """A workflow on a small tmpfs: a rule writing past its end, or vinemake's own state
    written into a disk already full; then space freed and a rerun."""
    disk = t.scratch / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, 4096):
        raise RuntimeError("a full disk needs root to mount a tmpfs")
    try:
        wf = disk / "wf"
        wf.mkdir()
        (wf / "Vinefile").write_text(
            "small.txt:\n\techo small > small.txt\n"
            + ("" if state else "big.txt: small.txt\n\thead -c 20000000 /dev/zero > big.txt\n"))
        filler = disk / "filler"
        if state:
            left = rng.choice([0, 1, 4, 16, 64, 256])
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1k", "count=5000"],
                           capture_output=True)
            os.truncate(filler, max(0, os.path.getsize(filler) - left * 1024))
        done = t.vinemake(cwd=wf)
        why, kinds = [], set()
        if done.code not in ((0, 1) if state else (1,)):
            kinds.add("wrong")
            why.append(f"exit {done.code}: {done.err[-300:]!r}")
        if not state and os.path.lexists(wf / "big.txt"):
            kinds.add("half")
            why.append("big.txt left at its path")
        got = read(wf / "small.txt")
        if got not in (None, b"small\n"):
            kinds.add("half")
            why.append(f"small.txt = {got!r}")
        if filler.exists():
            filler.unlink()
        if state:
            rerun = t.vinemake(cwd=wf)
            if rerun.code != 0 or read(wf / "small.txt") != b"small\n":
                kinds.add("wrong")
                why.append(f"the rerun with space: exit {rerun.code}: {rerun.err[-200:]!r}")
        return kinds, f"{'full-state' if state else 'full-disk'}: {'; '.join(why)}"
    finally:
        t.end_processes()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def r8_state(modes=R8_MODES, in_turn=False):
    modes = Variants(modes, in_turn)

    def scenario(rng, t: Trial) -> Result:
        """Two runs at once, .vinemake deleted mid-run, a full disk under a rule or the state."""
        mode = modes.pick(rng)
        if mode == "concurrent":
            return _r8_concurrent(rng, t)
        if mode == "delete-state":
            return _r8_delete_state(rng, t)
        return _r8_full(rng, t, state=mode == "full-state")
    return scenario
