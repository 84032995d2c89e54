"""--clean: exactly what the journal says this workflow made; never a source."""

import io
import os
from types import SimpleNamespace

from vinemake.common.spec import FileRef, Location, RuleSpec, Workflow
from vinemake.core.clean import clean_workflow, decide
from vinemake.core.graph import BuildGraph
from vinemake.core.journal import FileRecord, Journal


def rec(key, size=1, mtime=10):
    return FileRecord(key, size, mtime, "rule-k")


MADE = {"mid": rec("k1"), "out": rec("k2"), "gone": FileRecord("k3", 1, 10, "r", True)}
DISK = {"mid": (1, 10), "out": (1, 10), "gone": None}


def test_modes_pick_outputs_or_intermediates():
    assert decide("outputs", MADE, set(), {"out"}, DISK).paths == ("out",)
    assert decide("intermediates", MADE, set(), {"out"}, DISK).paths == ("mid",)
    c = decide("all", MADE, set(), {"out"}, DISK)
    assert c.paths == ("mid", "out") and c.state and set(c.keys) == {"k1", "k2", "k3"}
    c = decide("cache", MADE, set(), {"out"}, DISK)
    assert c.paths == () and set(c.keys) == {"k1", "k2", "k3"} and not c.state


def test_sources_and_changed_files_are_kept_with_a_reason():
    c = decide("all", MADE, {"mid"}, {"out"}, dict(DISK, out=(5, 99)), {"out": ""})
    assert c.paths == ()
    assert c.kept == (("mid", "it is a source now"),
                      ("out", "its content changed since vinemake made it"))


def rule(rid, targets, sources, command):
    return RuleSpec(id=rid, targets=tuple(FileRef(t, t) for t in targets),
                    sources=tuple(FileRef(s, s) for s in sources), command=command,
                    location=Location("Vinefile", rid + 1, 1))


def made(root, journal, path, key):
    full = os.path.join(root, path)
    with open(full, "w") as f:
        f.write(path)
    st = os.stat(full)
    journal.done(f"rule-{key}", path, "ran", [], [], [(path, key, st.st_size, st.st_mtime_ns)])


def test_clean_never_touches_sources_absolute_inputs_or_outside_files(tmp_path):
    root = tmp_path / "wf"
    root.mkdir()
    outside = tmp_path / "outside.dat"
    outside.write_text("precious")
    (root / "declared.in").write_text("input")
    (root / "now-source.csv").write_text("hand made")
    (root / "unrelated.txt").write_text("mine")
    first = rule(0, ["mid"], ["declared.in", "now-source.csv"], "c1")
    first = RuleSpec(0, first.targets, (FileRef(str(outside), "outside.dat"),) + first.sources,
                     "c1", first.location)
    wf = Workflow(str(root / "Vinefile"), (
        first,
        rule(1, ["out"], ["mid"], "c2")), inputs=("declared.in",))
    graph = BuildGraph.build(wf, str(root))
    journal = Journal(str(root / ".vinemake" / "journal"))
    journal.open()
    made(str(root), journal, "mid", "k1")
    made(str(root), journal, "out", "k2")
    # A journal that (wrongly or from an older Vinefile) claims sources were made here.
    made(str(tmp_path), journal, str(outside), "k3")
    os.utime(outside, ns=(1, 1))
    journal.done("rule-k4", "x", "ran", [], [], [("declared.in", "k4", 5, 0),
                                                ("now-source.csv", "k5", 9, 0)])
    journal.close()
    outside.write_text("precious")
    out = io.StringIO()
    options = SimpleNamespace(root=str(root), clean="all", cache_dir=None)
    assert clean_workflow(wf, graph, options, out) == 0
    assert sorted(os.listdir(root)) == ["declared.in", "now-source.csv", "unrelated.txt"]
    assert outside.read_text() == "precious"
    assert out.getvalue().splitlines()[:2] == ["removed mid", "removed out"]
    assert f"kept {outside}: it is a source now" in out.getvalue()


def test_clean_outputs_then_journal_forgets_them(tmp_path):
    root = str(tmp_path)
    wf = Workflow(os.path.join(root, "Vinefile"), (rule(0, ["mid"], [], "c1"),
                                                   rule(1, ["out"], ["mid"], "c2")))
    graph = BuildGraph.build(wf, root)
    journal = Journal(os.path.join(root, ".vinemake", "journal"))
    journal.open()
    made(root, journal, "mid", "k1")
    made(root, journal, "out", "k2")
    journal.close()
    options = SimpleNamespace(root=root, clean="outputs", cache_dir=None)
    clean_workflow(wf, graph, options, io.StringIO())
    assert os.path.exists(os.path.join(root, "mid"))
    assert not os.path.exists(os.path.join(root, "out"))
    assert set(Journal(os.path.join(root, ".vinemake", "journal")).state.files) == {"mid"}
