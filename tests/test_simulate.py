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
