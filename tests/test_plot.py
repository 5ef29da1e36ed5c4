"""poet.plot: the data each figure draws (read back from the Figure), the files it writes, and
the matrices of a hand-traced schedule."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from poet import figures, plot, schedule_figures
from solver import Node, Problem, Schedule, ScheduleError


def node(i, kind, out, cj, ws=0):
    return Node(i, f"n{i}", kind, out, compute_s=cj / 10, compute_j=cj, pagein_s=0.1,
                pagein_j=0.5, pageout_s=0.1, pageout_j=0.7, workspace_bytes=ws)


@pytest.fixture
def four():
    """f0 -> f1 -> loss -> bwd, bwd also reads f0 (sizes 100, 100, 10, 10 bytes; static 1000)."""
    nodes = [node(0, "forward", 100, 1.0), node(1, "forward", 100, 2.0),
             node(2, "loss", 10, 3.0), node(3, "backward", 10, 4.0)]
    return Problem(nodes, [(0, 1), (1, 2), (2, 3), (0, 3)], static_bytes=1000,
                   ram_budget_bytes=1200, name="four@testdev")


PAGING = [("compute", 0), ("page_out", 0), ("compute", 1), ("free", 0), ("compute", 2),
          ("free", 1), ("page_in", 0), ("compute", 3), ("free", 0), ("free", 2)]
REMAT = [("compute", 0), ("compute", 1), ("free", 0), ("compute", 2), ("free", 1),
         ("compute", 0), ("compute", 3), ("free", 0), ("free", 2), ("free", 3)]


def sched(problem, ins, strategy):
    return Schedule(ins, problem_fingerprint=problem.fingerprint, strategy=strategy,
                    ram_budget_bytes=problem.ram_budget_bytes)


def row(strategy, budget, energy, status="optimal", **kw):
    r = {"model": "four", "device": "testdev", "strategy": strategy, "ram_budget_bytes": budget,
         "runtime_budget_s": None, "status": status, "energy_j": energy,
         "compute_j": energy, "pagein_j": 0.0, "pageout_j": 0.0,
         "store_all_energy_j": 0.010, "min_feasible_ram_bytes": 2048,
         "store_all_peak_bytes": 4096}
    r.update(kw)
    return r


@pytest.fixture
def rows():
    # energies in J: 10 mJ is store-all; POET 12 mJ at the tightest budget
    return [
        row("poet", 2048, 0.012, compute_j=0.010, pagein_j=0.0015, pageout_j=0.0005),
        row("remat", 2048, 0.015, compute_j=0.015),
        row("store_all", 2048, None, status="infeasible", compute_j=None),
        row("poet", 3072, 0.011, compute_j=0.0105, pagein_j=0.0005, pageout_j=0.0),
        row("remat", 3072, 0.0115, compute_j=0.0115),
        row("store_all", 3072, None, status="infeasible", compute_j=None),
        row("poet", 4096, 0.010, compute_j=0.010),
        row("remat", 4096, 0.010, compute_j=0.010),
        row("store_all", 4096, 0.010, status="ok", compute_j=0.010),
    ]


def lines_by_gid(ax):
    return {ln.get_gid(): ln for ln in ax.lines if ln.get_gid()}


def test_units_follow_the_data():
    assert plot.byte_unit(512) == (1.0, "B")
    assert plot.byte_unit(4096) == (1024.0, "KiB")
    assert plot.byte_unit(101 * 2**20) == (2.0**20, "MiB")
    assert plot.energy_unit(0.012) == (1e-3, "mJ")
    assert plot.energy_unit(5.76) == (1.0, "J")
    assert plot.energy_unit(3e-7) == (1e-9, "nJ")


def test_energy_vs_budget_draws_the_rows(rows):
    fig = plot.energy_vs_budget_figure(rows)
    ax, ax2 = fig.axes[:2]
    lines = lines_by_gid(ax)
    # budgets in KiB, energies in mJ; infeasible store-all budgets are left out of its line
    assert list(lines["energy:poet"].get_xdata()) == [2.0, 3.0, 4.0]
    assert list(lines["energy:poet"].get_ydata()) == pytest.approx([12.0, 11.0, 10.0])
    assert list(lines["energy:remat"].get_ydata()) == pytest.approx([15.0, 11.5, 10.0])
    assert list(lines["energy:store_all"].get_xdata()) == [4.0]
    assert ax.get_xlabel() == "RAM budget (KiB)"
    assert ax.get_ylabel() == "energy per training step (mJ)"
    # store-all energy (horizontal) and minimum feasible budget (vertical) are marked
    horiz = [ln for ln in ax.lines if list(ln.get_ydata()) == [10.0, 10.0]]
    vert = [ln for ln in ax.lines if list(ln.get_xdata()) == [2.0, 2.0]]
    assert horiz and vert
    # overhead panel: (12 - 10) / 10 = 20 %, (11 - 10) / 10 = 10 %; 0 % is not drawn on log axes
    over = lines_by_gid(ax2)
    assert list(over["overhead:poet"].get_ydata()) == pytest.approx([20.0, 10.0])
    assert list(over["overhead:remat"].get_ydata()) == pytest.approx([50.0, 15.0])
    assert "overhead:store_all" not in over
    assert ax2.get_yscale() == "log"
    assert "four on testdev" in fig.get_suptitle()
    legend_text = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_text[0].startswith("POET")
    assert "store-all energy (10.0 mJ)" in legend_text
    assert "minimum feasible RAM (2.0 KiB)" in legend_text


def test_energy_vs_budget_lists_a_strategy_infeasible_everywhere(rows):
    rows = [r for r in rows if r["strategy"] != "store_all"] + [
        row("sqrtn", b, None, status="infeasible") for b in (2048, 3072, 4096)]
    fig = plot.energy_vs_budget_figure(rows)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "sqrt(n) checkpoints: infeasible at every budget" in labels


def test_energy_split_values_and_bars(rows):
    split = plot.energy_split(rows, "poet")
    assert [s["ram_budget_bytes"] for s in split] == [2048, 3072, 4096]
    # compute = min(store-all energy, compute_j); recompute = the rest of compute_j
    assert split[1]["compute"] == pytest.approx(0.010)
    assert split[1]["recompute"] == pytest.approx(0.0005)
    assert split[0]["pagein"] == pytest.approx(0.0015)
    fig = plot.energy_split_figure(rows, "poet")
    ax, ax2 = fig.axes[:2]
    # whole-step panel in mJ: bar tops are the row energies 12, 11, 10
    tops = np.zeros(3)
    for c in ax.containers:
        tops += [p.get_height() for p in c.patches]
    assert list(tops) == pytest.approx([12.0, 11.0, 10.0])
    # above store-all panel, in the unit of its largest bar (2 mJ -> mJ): 2, 1, 0
    tops2 = np.zeros(3)
    for c in ax2.containers:
        tops2 += [p.get_height() for p in c.patches]
    assert list(tops2) == pytest.approx([2.0, 1.0, 0.0])
    assert ax2.get_ylabel().endswith("(mJ)")


def test_energy_split_marks_infeasible_budgets(rows):
    fig = plot.energy_split_figure(rows, "store_all")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("infeasible") == 2


def test_bad_rows_are_rejected(rows):
    with pytest.raises(ValueError, match="rows is empty"):
        plot.energy_vs_budget_figure([])
    with pytest.raises(ValueError, match="'energy_j' column"):
        plot.energy_vs_budget_figure([{"strategy": "poet", "ram_budget_bytes": 1,
                                       "status": "ok"}])
    with pytest.raises(ValueError, match="strategy 'dtr' has no rows; present: poet"):
        plot.energy_split(rows, "dtr")
    with pytest.raises(TypeError, match="list of sweep rows"):
        plot.energy_vs_budget_figure({"strategy": "poet"})


def test_matrices_of_a_paging_schedule(four):
    m = plot.schedule_matrices(four, sched(four, PAGING, "paging"))
    assert m["computed"].shape == (4, 4)
    assert (m["computed"] == np.diag([1, 1, 1, 1])).all()
    # in RAM while each compute runs: stage 1 holds f0 (kept), stage 2 f1, stage 3 the loss
    # (kept) and f0 (paged in for this stage)
    assert m["ram"].tolist() == [[0, 1, 0, 2], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    # f0 written right after its compute (stage 0), on flash from then on
    assert m["flash"].tolist() == [[2, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_matrices_of_a_remat_schedule(four):
    m = plot.schedule_matrices(four, sched(four, REMAT, "remat"))
    assert m["computed"].shape == (4, 5)
    assert m["computed"][0].tolist() == [1, 0, 0, 2, 0]     # f0 recomputed in stage 3
    assert m["ram"][:, 4].tolist() == [1, 0, 1, 0]           # bwd reads f0 and the loss
    assert not m["flash"].any()


def test_matrices_reject_a_broken_schedule(four):
    with pytest.raises(ScheduleError, match="instruction 0"):
        plot.schedule_matrices(four, sched(four, [("compute", 1)], "custom"))


def test_schedule_matrices_figure(four):
    fig = plot.schedule_matrices_figure(four, sched(four, PAGING, "paging"))
    images = [ax.get_images()[0].get_array() for ax in fig.axes[:3]]
    assert images[1].tolist() == [[0, 1, 0, 2], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert titles == ["computed", "in RAM", "on flash"]
    assert "four on testdev: paging schedule" in fig.get_suptitle()


def test_ram_trace_figure(four):
    fig = plot.ram_trace_figure(four, sched(four, PAGING, "paging"))
    ax = fig.axes[0]
    lines = lines_by_gid(ax)
    # hand-traced RAM during each instruction (static 1000 B; a free still holds its tensor
    # while it runs); the peak, 1200 B, is over 1 KiB, so the axis is in KiB
    expected = [1100, 1100, 1200, 1200, 1110, 1110, 1110, 1120, 1120, 1020]
    assert list(lines["ram"].get_ydata()) == pytest.approx([b / 1024 for b in expected])
    assert ax.get_ylabel() == "RAM in use (KiB)"
    assert list(lines["page_out"].get_xdata()) == [1]
    assert list(lines["page_in"].get_xdata()) == [6]
    assert list(lines["recompute"].get_xdata()) == []
    budget = [ln for ln in ax.lines if list(ln.get_ydata()) == [1200 / 1024] * 2]
    assert budget, "the RAM budget line is drawn"
    fig2 = plot.ram_trace_figure(four, sched(four, REMAT, "remat"))
    assert list(lines_by_gid(fig2.axes[0])["recompute"].get_xdata()) == [5]


def check_png_svg(paths):
    assert [p.suffix for p in paths] == [".png", ".svg"]
    png, svg = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert not list(png.parent.glob(".*.tmp")), "no temp file left behind"


def test_plot_functions_write_png_and_svg(tmp_path, rows, four):
    check_png_svg(plot.plot_energy_vs_budget(rows, tmp_path / "a.png"))
    assert (tmp_path / "a.png").exists() and (tmp_path / "a.svg").exists()
    check_png_svg(plot.plot_energy_split(rows, tmp_path / "d"))
    check_png_svg(plot.plot_schedule_matrices(four, sched(four, PAGING, "paging"),
                                              tmp_path / "sub" / "b"))
    check_png_svg(plot.plot_ram_trace(four, sched(four, REMAT, "remat"), tmp_path / "c"))
    pdf = plot.plot_ram_trace(four, sched(four, REMAT, "remat"), tmp_path / "c2", formats=["pdf"])
    assert pdf[0].read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match="formats: 'jpg' is not one of png, svg, pdf"):
        plot.plot_ram_trace(four, sched(four, REMAT, "remat"), tmp_path / "c3", formats=["jpg"])


def test_matrices_check_the_whole_schedule(four):
    """The walk is the simulator's: an incomplete step and a schedule for another problem are
    refused like `solver.simulate` refuses them."""
    with pytest.raises(ScheduleError, match="never computed"):
        plot.schedule_matrices(four, sched(four, [("compute", 0)], "custom"))
    other = Schedule(PAGING, problem_fingerprint="sha256:" + "0" * 64, strategy="paging")
    with pytest.raises(ScheduleError, match="made for another problem"):
        plot.schedule_matrices(four, other)


def test_matrices_drop_flash_clears_the_stage(four):
    ins = [("compute", 0), ("page_out", 0), ("compute", 1), ("drop_flash", 0), ("compute", 2),
           ("free", 1), ("compute", 3)]
    m = plot.schedule_matrices(four, sched(four, ins, "custom"))
    # written in stage 0, on flash at the end of stage 0 only: dropped after stage 1's compute
    assert m["flash"][0].tolist() == [2, 0, 0, 0]


def test_every_registered_strategy_has_a_style():
    from solver import STRATEGIES
    assert tuple(plot.STRATEGY_STYLE) == STRATEGIES
    assert all(colour for _, colour, _, _ in plot.STRATEGY_STYLE.values())


def test_legend_follows_the_registry_order(rows):
    from solver import STRATEGIES
    shuffled = sorted(rows, key=lambda r: r["strategy"] != "store_all")   # store_all first
    fig = plot.energy_vs_budget_figure(shuffled)
    drawn = [ln.get_gid().split(":")[1] for ln in fig.axes[0].lines
             if (ln.get_gid() or "").startswith("energy:")]
    assert drawn == [s for s in STRATEGIES if s in {"poet", "remat", "store_all"}]


# ---- layer names instead of node ids ----------------------------------------------------------

def svg_titles(path):
    """{group id: tooltip text} of the SVG groups that carry a <title>."""
    ns = "{http://www.w3.org/2000/svg}"
    root = ET.parse(path).getroot()
    return {g.get("id"): g.find(ns + "title").text for g in root.iter(ns + "g")
            if g.find(ns + "title") is not None}


def test_matrices_label_rows_by_layer_name(four):
    fig = plot.schedule_matrices_figure(four, sched(four, PAGING, "paging"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["n0", "n1", "n2", "n3"]
    assert list(ax.get_yticks()) == [0, 1, 2, 3]
    assert ax.get_ylabel() == "layer (red dashed line: the loss)"


def test_matrices_thin_the_names_of_a_long_graph():
    names = [f"features.{i}.block.conv_{i}.backward_weight" for i in range(300)]
    nodes = [Node(i, names[i], "forward" if i < 299 else "loss", 8, compute_s=0.1,
                  compute_j=1.0, pagein_s=0.1, pagein_j=0.5, pageout_s=0.1, pageout_j=0.7)
             for i in range(300)]
    p = Problem(nodes, [(i, i + 1) for i in range(299)], name="chain@testdev")
    fig = plot.schedule_matrices_figure(p, sched(p, [("compute", i) for i in range(300)],
                                                 "custom"))
    ax = fig.axes[0]
    ticks = [int(t) for t in ax.get_yticks()]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # height min(10, 2.6 + 300 / 22) = 10 in: int(0.7 * 10 * 72 / 10.5) = 48 labels at most,
    # so every ceil(300 / 48) = 7th node is named, from node 0
    assert ticks == list(range(0, 300, 7))
    assert labels[1] == "features.7.bl\u2026ackward_weight" and len(labels[1]) == 28
    assert ax.get_ylabel().startswith("layer, one name every 7 rows")
    # every row of every panel carries its full name as a tooltip
    tips = figures.tooltips(fig)
    assert len(tips) == 3 * 300
    assert sum(t.startswith(names[7] + " (node 7, forward, 8 B)") for t in tips.values()) == 3


def test_short_names_and_ticks():
    assert figures.short_name("layer4.1.conv2.backward", 12) == "layer\u2026ckward"
    assert figures.short_name("fc1", 12) == "fc1"
    with pytest.raises(ValueError, match="width must be >= 5"):
        figures.short_name("fc1", 3)
    with pytest.raises(ValueError, match="max_labels must be a whole number >= 1"):
        schedule_figures.node_ticks(Problem([node(0, "loss", 1, 1.0)], []), 0)
    assert schedule_figures.label_marks([51, 0, 1, 2, 50], 140, spacing=70) == [0, 2, 50]


def test_matrices_svg_has_a_tooltip_per_row(tmp_path, four):
    _, svg = plot.plot_schedule_matrices(four, sched(four, PAGING, "paging"), tmp_path / "m")
    titles = svg_titles(svg)
    assert len(titles) == 3 * 4
    # node 0 by hand (test_matrices_of_a_paging_schedule): RAM row [0, 1, 0, 2], flash row
    # [2, 1, 1, 1]
    assert titles["tip-0"] == ("n0 (node 0, forward, 100 B): computed 1x, held in RAM during 2 "
                               "stages (paged in for 1), paged out 1x")
    assert ET.parse(svg).getroot().find(".//*[@id='tip-0']").get("pointer-events") == "all"


def test_ram_trace_names_the_peak_and_the_marks(tmp_path, four):
    fig = plot.ram_trace_figure(four, sched(four, PAGING, "paging"))
    ax = fig.axes[0]
    peak = lines_by_gid(ax)["peak"]
    # RAM during the instructions: 1100, 1100, 1200, 1200, ...: the first 1200 B is the peak
    assert list(peak.get_xdata()) == [2]
    assert peak.get_label() == "peak 1.2 KiB: instruction 2, compute n1"
    marks = {t.get_gid(): t.get_text() for t in ax.texts if (t.get_gid() or "").startswith("mark")}
    assert marks == {"mark-label-1": "n0", "mark-label-6": "n0"}     # page-out, page-in of n0
    _, svg = plot.plot_ram_trace(four, sched(four, PAGING, "paging"), tmp_path / "r")
    titles = svg_titles(svg)
    assert len(titles) == len(PAGING)
    assert titles["tip-6"] == "instruction 6: page-in n0 (node 0), RAM in use 1.1 KiB"
    fig2 = plot.ram_trace_figure(four, sched(four, REMAT, "remat"))
    assert figures.tooltips(fig2)["tip-5"] == ("instruction 5: recompute n0 (node 0), RAM in use "
                                            "1.1 KiB")
