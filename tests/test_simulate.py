"""The simulator on small hand-made graphs: costs, peaks, and the rules it enforces."""

import pytest

from solver import (InfeasibleError, Node, Problem, Schedule, ScheduleError, min_feasible_ram,
                    simulate, store_all, store_all_peak)


def chain():
    """a -> b -> loss -> gb -> ga, backward reading the saved forward outputs.

    a(100 B) b(200 B) loss(8 B) gb(200 B, reads loss and a) ga(100 B, reads gb)
    """
    spec = [("a", "forward", 100, 0, 1.0), ("b", "forward", 200, 40, 2.0),
            ("loss", "loss", 8, 0, 0.5), ("gb", "backward", 200, 10, 3.0),
            ("ga", "backward", 100, 0, 4.0)]
    nodes = [Node(i, n, k, out, compute_s=cj / 10, compute_j=cj, pagein_s=0.01 * (i + 1),
                  pagein_j=0.1 * (i + 1), pageout_s=0.02 * (i + 1), pageout_j=0.2 * (i + 1),
                  workspace_bytes=ws)
             for i, (n, k, out, ws, cj) in enumerate(spec)]
    edges = [(0, 1), (1, 2), (2, 3), (0, 3), (3, 4)]
    return Problem(nodes, edges, static_bytes=1000)


def test_store_all_energy_is_sum_of_compute_energies_exactly():
    p = chain()
    s = store_all(p)
    r = simulate(p, s)
    assert r.energy_j == sum(n.compute_j for n in p.nodes)
    assert r.time_s == sum(n.compute_s for n in p.nodes)
    assert r.split["pagein_j"] == 0 and r.split["pageout_j"] == 0
    assert s.predicted["energy_j"] == r.energy_j
    assert r.n_recompute == 0 and r.n_page_in == 0


def test_store_all_instructions_and_trace_by_hand():
    p = chain()
    s = store_all(p)
    assert s.instructions == [("compute", 0), ("compute", 1), ("compute", 2), ("free", 1),
                              ("compute", 3), ("free", 0), ("free", 2), ("compute", 4),
                              ("free", 3), ("free", 4)]
    r = simulate(p, s)
    # during compute b: static 1000 + a 100 + b 200 + ws 40
    assert r.ram_trace[1] == 1340
    # during compute gb: 1000 + a 100 + loss 8 + gb 200 + ws 10 (b was freed)
    assert r.ram_trace[4] == 1318
    assert r.peak_ram_bytes == 1340 == store_all_peak(p)
    assert r.peak_index == 1
    assert r.ram_after[-1] == 1000


def test_min_feasible_ram_by_hand():
    # largest working set: gb reads loss(8)+a(100), writes 200, ws 10 -> 318; b: 100+200+40 = 340
    assert min_feasible_ram(chain()) == 1340


def test_recompute_schedule():
    p = chain()
    ins = [("compute", 0), ("compute", 1), ("free", 0), ("compute", 2), ("free", 1),
           ("compute", 0), ("compute", 3), ("free", 0), ("free", 2), ("compute", 4),
           ("free", 3), ("free", 4)]
    r = simulate(p, Schedule(ins))
    assert r.n_recompute == 1
    assert r.energy_j == pytest.approx(1 + 2 + 0.5 + 1 + 3 + 4)
    assert r.split["compute_j"] == r.energy_j


def test_page_out_and_in_schedule():
    p = chain()
    ins = [("compute", 0), ("compute", 1), ("page_out", 0), ("free", 0), ("compute", 2),
           ("free", 1), ("page_in", 0), ("compute", 3), ("free", 0), ("drop_flash", 0),
           ("free", 2), ("compute", 4), ("free", 3), ("free", 4)]
    r = simulate(p, Schedule(ins))
    assert r.n_page_out == 1 and r.n_page_in == 1
    assert r.split["pageout_j"] == pytest.approx(0.2) and r.split["pagein_j"] == pytest.approx(0.1)
    assert r.energy_j == pytest.approx(10.5 + 0.3)
    assert r.time_s == pytest.approx(1.05 + 0.02 + 0.01)
    # a was out of RAM while the loss was computed: 1000 + b 200 + loss 8
    assert r.ram_trace[4] == 1208
    assert r.peak_flash_bytes == 100
    assert r.flash_trace[-1] == 0
    assert r.bytes_paged_out == 100 == r.bytes_paged_in
    assert r.peak_ram_bytes == 1340  # computing b with a resident


@pytest.mark.parametrize("ins,rule,index", [
    ([("compute", 1)], "operands not in RAM: [0]", 0),
    ([("compute", 0), ("compute", 0)], "output already in RAM", 1),
    ([("page_in", 0)], "page_in needs the tensor on flash", 0),
    ([("compute", 0), ("page_out", 0), ("page_out", 0)], "already on flash", 2),
    ([("free", 3)], "free of a tensor that is not in RAM", 0),
    ([("compute", 0), ("drop_flash", 0)], "drop_flash of a tensor that is not on flash", 1),
    ([("compute", 0), ("free", 0), ("page_out", 0)], "page_out needs the tensor in RAM", 2),
    ([("compute", 9)], "node 9 does not exist", 0),
])
def test_invalid_schedules_are_rejected_with_their_rule(ins, rule, index):
    with pytest.raises(ScheduleError) as e:
        simulate(chain(), Schedule(ins))
    assert rule in str(e.value)
    assert str(e.value).startswith(f"instruction {index} ")


def test_incomplete_schedule():
    with pytest.raises(ScheduleError, match=r"incomplete, never computed: 2 \('loss'\)"):
        simulate(chain(), Schedule([("compute", 0), ("compute", 1)]))


def test_ram_budget_names_instruction():
    p = chain().with_budgets(ram_budget_bytes=1300)
    with pytest.raises(ScheduleError, match=r"instruction 1 \(compute 1, node 'b'\): RAM budget "
                                            r"exceeded: 1340 bytes in use > budget 1300"):
        simulate(p, Schedule(store_all(p, check_budget=False).instructions))
    with pytest.raises(InfeasibleError, match="store_all needs 1340 bytes"):
        store_all(p)
    r = simulate(p, store_all(p, check_budget=False), check_budgets=False)
    assert r.over_budget and r.peak_ram_bytes == 1340


def test_flash_and_runtime_budgets():
    p = chain().with_budgets(flash_budget_bytes=50)
    with pytest.raises(ScheduleError, match="flash budget exceeded: 100 bytes"):
        simulate(p, Schedule([("compute", 0), ("page_out", 0)]))
    p = chain().with_budgets(runtime_budget_s=1.0)
    with pytest.raises(ScheduleError, match="runtime budget exceeded: 1.05 s"):
        simulate(p, store_all(chain()))


def test_fingerprint_mismatch():
    other = chain().with_budgets()
    s = store_all(other)
    d = chain().to_dict()
    d["nodes"][0]["out_bytes"] = 101
    with pytest.raises(ScheduleError, match="made for another problem"):
        simulate(Problem.from_dict(d), s)


def test_schedule_file_round_trip_and_errors(tmp_path):
    p = chain()
    s = store_all(p)
    s.extra["model"] = {"zoo": "mlp", "batch_size": 1}
    path = tmp_path / "s.json"
    s.save(path)
    t = Schedule.load(path)
    assert t.instructions == s.instructions and t.extra["model"]["zoo"] == "mlp"
    assert t.problem_fingerprint == p.fingerprint and t.predicted == s.predicted
    path.write_text(path.read_text().replace('"compute"', '"comptue"', 1))
    with pytest.raises(ScheduleError, match=r"instructions\[0\]: op 'comptue' is not one of"):
        Schedule.load(path)
    path.write_text("[1, 2")
    with pytest.raises(ScheduleError, match="not a valid schedule JSON"):
        Schedule.load(path)
    path.write_text('{"format": "poet-schedule/1", "instructions": [["free", -1]]}')
    with pytest.raises(ScheduleError, match=r"node id must be a whole number >= 0"):
        Schedule.load(path)


# ---- the walker itself ------------------------------------------------------------------------

def test_machine_state_after_each_step():
    from solver import Machine
    p = chain()
    m = Machine(p)
    assert (m.ram, m.flash, m.during, m.step) == (1000, 0, 1000, 0)
    # (instruction, in RAM, on flash, ram after, flash after, ram during)
    steps = [
        (("compute", 0), [0], [], 1100, 0, 1100),
        (("compute", 1), [0, 1], [], 1300, 0, 1340),         # b's workspace 40 while it runs
        (("page_out", 0), [0, 1], [0], 1300, 100, 1300),
        (("free", 0), [1], [0], 1200, 100, 1300),      # a free counts before
        (("compute", 2), [1, 2], [0], 1208, 100, 1208),
        (("free", 1), [2], [0], 1008, 100, 1208),
        (("page_in", 0), [0, 2], [0], 1108, 100, 1108),
        (("drop_flash", 0), [0, 2], [], 1108, 0, 1108),
        (("compute", 3), [0, 2, 3], [], 1308, 0, 1318),      # gb's workspace 10
        (("free", 0), [2, 3], [], 1208, 0, 1308),
        (("free", 2), [3], [], 1200, 0, 1208),
        (("compute", 4), [3, 4], [], 1300, 0, 1300),
    ]
    for k, ((op, i), ram_set, flash_set, ram, flash, during) in enumerate(steps):
        assert m.apply(op, i) == during
        assert (m.resident(), m.flashed(), m.ram, m.flash, m.during, m.step) == \
            (ram_set, flash_set, ram, flash, during, k + 1), (k, op, i)
        assert m.in_ram == [x in ram_set for x in range(p.T)]
        assert m.on_flash == [x in flash_set for x in range(p.T)]
    assert m.computed == [1, 1, 1, 1, 1]
    assert (m.peak_ram, m.peak_index, m.peak_flash) == (1340, 1, 100)
    assert m.n_page_out == m.n_page_in == 1
    assert m.energy_j == pytest.approx(10.5 + 0.2 + 0.1)
    assert m.ram_trace == [s[5] for s in steps] and m.ram_after == [s[3] for s in steps]
    assert m.flash_trace == [s[4] for s in steps]
    m.finish()
    report = m.report()
    assert report == simulate(p, Schedule([s[0] for s in steps]))
    assert report.predicted() == m.predicted()


@pytest.mark.parametrize("prefix,op,i,rule", [
    ([], "compute", 1, "operands not in RAM: [0]"),
    ([("compute", 0)], "compute", 0, "output already in RAM"),
    ([], "page_out", 0, "page_out needs the tensor in RAM"),
    ([("compute", 0), ("page_out", 0)], "page_out", 0, "already on flash"),
    ([], "page_in", 0, "page_in needs the tensor on flash"),
    ([("compute", 0), ("page_out", 0)], "page_in", 0, "page_in of a tensor already in RAM"),
    ([], "free", 0, "free of a tensor that is not in RAM"),
    ([("compute", 0)], "drop_flash", 0, "drop_flash of a tensor that is not on flash"),
    ([], "compute", 5, "node 5 does not exist (ids are 0..4)"),
    ([], "swap", 0, "op 'swap' is not an instruction"),
])
def test_machine_apply_names_the_broken_rule(prefix, op, i, rule):
    from solver import Machine
    m = Machine(chain())
    for ins in prefix:
        m.apply(*ins)
    before = (list(m.in_ram), list(m.on_flash), m.ram, m.flash, m.step)
    with pytest.raises(ScheduleError) as e:
        m.apply(op, i)
    assert str(e.value).startswith(f"instruction {len(prefix)} ({op} {i}, node ")
    assert rule in str(e.value)
    assert m.check(op, i) is not None and rule in m.check(op, i)
    assert (m.in_ram, m.on_flash, m.ram, m.flash, m.step) == before   # nothing applied


def test_machine_budgets_raise_or_are_recorded():
    from solver import Machine
    p = chain().with_budgets(ram_budget_bytes=1300, flash_budget_bytes=50, runtime_budget_s=0.1)
    m = Machine(p)
    m.apply("compute", 0)
    with pytest.raises(ScheduleError, match=r"instruction 1 \(compute 1, node 'b'\): RAM budget "
                                            r"exceeded: 1340 bytes in use > budget 1300"):
        m.apply("compute", 1)
    with pytest.raises(ScheduleError, match=r"instruction 1 \(page_out 0, node 'a'\): flash "
                                            r"budget exceeded: 100 bytes on flash > budget 50"):
        m.apply("page_out", 0)
    loose = Machine(p, check_budgets=False)
    for ins in store_all(p, check_budget=False).instructions:
        loose.apply(*ins)
    loose.finish()
    assert loose.over_budget[0].startswith("RAM at instruction 1: RAM budget exceeded")
    assert loose.over_budget[-1].startswith("runtime budget exceeded: 1.05 s")
    strict = Machine(p.with_budgets(ram_budget_bytes=None, flash_budget_bytes=None))
    for ins in store_all(p, check_budget=False).instructions:
        strict.apply(*ins)
    with pytest.raises(ScheduleError, match="end of schedule: runtime budget exceeded"):
        strict.finish()
    with pytest.raises(ScheduleError, match=r"after 1 instructions\): the step is incomplete, "
                                            r"never computed: 1 \('b'\)"):
        one = Machine(chain())
        one.apply("compute", 0)
        one.finish()
