"""`poet fit` (issue #13 item 1): the training choices of one model on one device.

Hand counts come from the models' own ``numel()``: the graph's static split must equal them.
"""

from __future__ import annotations

import pytest
import torch

import poet
import solver
from poet.fit import fit, fit_json, fit_table
from poet.fit_choices import model_blocks, parse_battery, train_choices
from poet.fit_fix import cheapest_fix

pytestmark = pytest.mark.usefixtures("one_thread")

F32 = 4


def nbytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in params)


def row(report, train, weights, update):
    found = [r for r in report.rows if (r.train, r.weights, r.update) == (train, weights, update)]
    assert len(found) == 1, (train, weights, update)
    return found[0]


# ---- the static split by hand --------------------------------------------------------------------

def test_sensor_cnn1d_train_last_by_hand():
    """train=last trains the head Linear(64, 6): 64*6 + 6 = 390 floats; Adam keeps two buffers per
    trained parameter and a 4-byte step count per trained tensor; everything else is frozen and, with weights in flash, leaves the RAM."""
    model, _, x, _ = poet.zoo.get("sensor_cnn1d")
    head = nbytes(model.fc.parameters())
    assert head == (64 * 6 + 6) * F32
    total = nbytes(model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    report = fit("sensor_cnn1d", "nrf52840", optimizer="adam", trains=["last"], solve=False)
    for weights in ("ram", "flash"):
        for update in ("buffered", "fused"):
            r = row(report, "last", weights, update)
            assert r.trained_params == head
            assert r.optimizer_state == 2 * head + 2 * 4  # weight and bias: two step counts
            assert r.grads == (head if update == "buffered" else 0)
            assert r.frozen_params == total - head
            assert r.frozen_in_flash == (total - head if weights == "flash" else 0)
            assert r.buffers == buffers
            assert r.batch == 3 * 128 * F32 + 8  # one float window and one int64 label
            assert r.static_ram_bytes == (r.trained_params + r.grads + r.optimizer_state + r.buffers
                                          + r.batch + r.frozen_params - r.frozen_in_flash)
            assert r.fits and r.reason is None


def test_ds_cnn_train_bias_by_hand():
    """train=bias (TinyTL) trains every *.bias: the 9 BatchNorms' (64 each) and the head's (12)."""
    model, _, _, _ = poet.zoo.get("ds_cnn")
    biases = nbytes(p for n, p in model.named_parameters() if n.endswith(".bias"))
    assert biases == (9 * 64 + 12) * F32
    total = nbytes(model.parameters())
    report = fit("ds_cnn", "nrf52840", optimizer="adam", trains=["bias"], updates=["fused"],
                 solve=False)
    flash, ram = row(report, "bias", "flash", "fused"), row(report, "bias", "ram", "fused")
    for r in (flash, ram):
        assert (r.trained_params, r.optimizer_state, r.grads) == (biases, 2 * biases + 10 * 4, 0)
        assert r.frozen_params == total - biases
    assert flash.frozen_in_flash == total - biases and ram.frozen_in_flash == 0
    assert ram.min_ram_bytes - flash.min_ram_bytes == total - biases
    assert ram.store_all_peak_bytes - flash.store_all_peak_bytes == total - biases


# ---- blocks and choices --------------------------------------------------------------------------

def test_blocks_and_sparse_choices():
    model, _, x, _ = poet.zoo.get("sensor_cnn1d")
    # the largest Sequential is `features` (conv, BN, ReLU x 3); ReLUs own no parameters
    assert model_blocks(model, x) == ["features.0", "features.1", "features.3", "features.4",
                                      "features.6", "features.7", "fc"]
    choices = dict(train_choices(model, x))
    # last1 is the head, the same as "last"; last8 >= 7 blocks is "all": both left out
    assert list(choices) == ["all", "bias", "last", "last2", "last4"]
    assert choices["last2"] == ("features.7", "fc")
    assert choices["last4"] == ("features.4", "features.6", "features.7", "fc")
    mb, _, xm, _ = poet.zoo.get("mobilenetv2", width=0.35, resolution=96, layout="imagenet")
    blocks = model_blocks(mb, xm)
    assert blocks == [f"features.{i}" for i in range(len(mb.features))] + ["classifier"]


# ---- sorting, reasons, the best line -------------------------------------------------------------

def test_sort_order_and_reasons_on_a_small_device():
    """On an MKR1000 (24 KiB usable) only some choices of the sensor CNN fit."""
    report = fit("sensor_cnn1d", "mkr1000", battery="2.4kJ", executor="serial", time_limit_s=5)
    rows = report.rows
    fitting = [r for r in rows if r.fits]
    missing = [r for r in rows if not r.fits]
    assert fitting and missing
    assert rows == fitting + missing  # every fitting row first
    energies = [r.energy_j for r in fitting]
    assert energies == sorted(energies)
    shortfalls = [r.shortfall_bytes for r in missing]
    assert shortfalls == sorted(shortfalls)
    usable = poet.load_profile("mkr1000").usable_ram_bytes
    for r in missing:
        assert r.ram_short_bytes == max(0, r.min_ram_bytes - usable)
        assert r.reason == f"RAM: needs {poet.units.format_bytes(r.ram_short_bytes)} more"
    # a fitting row's schedule, checked independently by the simulator
    top = rows[0]
    rep = solver.simulate(top.problem, top.result.schedule)
    assert rep.peak_ram_bytes <= usable and rep.energy_j == pytest.approx(top.energy_j, rel=1e-9)
    assert top.steps == pytest.approx(2400 / top.energy_j)
    line = report.best_line()
    assert line.startswith(f"best: {top.describe()}: ")
    assert "steps on 2.40 kJ" in line
    # train=all with buffered gradients: its minimum RAM by the solver's own bound
    model, loss_fn, x, y = poet.zoo.get("sensor_cnn1d")
    g = poet.extract(model, loss_fn, x, y, train="all", update="buffered")
    expect = solver.min_feasible_ram(poet.make_problem(g, "mkr1000", weights="ram"))
    assert row(report, "all", "ram", "buffered").min_ram_bytes == expect
    data = fit_json(report)
    assert data["format"] == "poet-fit/1" and len(data["rows"]) == len(rows)
    assert data["best"]["mkr1000"]["train"] == top.train
    assert fit_table(report).splitlines()[-1] == line


def test_weights_over_the_program_flash():
    """MbV2-0.35 at 96 with only the head training: 1.5 MiB of frozen weights do not fit the
    MKR1000's 192 KiB of program flash left beside the firmware."""
    mb, *_ = poet.zoo.get("mobilenetv2", width=0.35, resolution=96, layout="imagenet")
    frozen = nbytes(mb.parameters()) - nbytes(mb.classifier.parameters())
    free = poet.load_profile("mkr1000").weights_capacity_bytes
    report = fit(poet.modelspec.ModelSpec("mobilenetv2", options={"width": 0.35, "resolution": 96,
                                                                  "layout": "imagenet"}),
                 "mkr1000", trains=["last"], updates=["fused"], solve=False)
    r = row(report, "last", "flash", "fused")
    assert r.frozen_in_flash == frozen and r.flash_over_bytes == frozen - free
    assert not r.fits and f"flash: weights {poet.units.format_bytes(frozen - free)} over" in r.reason


# ---- the battery -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,joules", [("2.4kJ", 2400.0), ("2400 J", 2400.0), ("3.7Wh", 13320.0),
                                         ("1000mAh@3.7V", 13320.0), ("1.2Ah@3V", 12960.0),
                                         (500, 500.0)])
def test_battery_parser(text, joules):
    assert parse_battery(text) == pytest.approx(joules)


@pytest.mark.parametrize("bad", ["", "2.4", "2.4 kg", "-3J", "0J", "1000mAh", "5mJ", "inf J", True])
def test_battery_parser_rejects(bad):
    with pytest.raises(ValueError, match="--battery"):
        parse_battery(bad)


# ---- a step that does not fit with PyTorch's defaults ------------------------------------------

def test_cheapest_fix():
    """DS-CNN, train=all, buffered, weights in RAM needs 313 KiB on an nRF52840 (224 KiB usable);
    fused updates drop the 90.5 KiB of gradient buffers and it fits."""
    text = cheapest_fix("ds_cnn", "nrf52840", train="all", weights="ram", update="buffered")
    assert text is not None and "update=fused" in text and "weights=" not in text
    assert cheapest_fix("ds_cnn", "nrf52840", train="last", weights="ram") is None


def test_cheapest_fix_keeps_fold_bn():
    """With fold_bn the suggested choice is measured on the folded model: its minimum is the
    folded fit row's, below the unfolded one's (the BatchNorm statistics are gone)."""
    from poet.units import format_bytes

    plain = cheapest_fix("sensor_cnn1d", "mkr1000", train="all", weights="ram")
    folded = cheapest_fix("sensor_cnn1d", "mkr1000", train="all", weights="ram", fold_bn=True)
    assert "train=last and weights=flash" in plain and "train=last and weights=flash" in folded
    rows = {fold: fit("sensor_cnn1d", "mkr1000", fold_bn=fold, trains=["last"], updates=["buffered"],
                      weights=["flash"], solve=False).rows[0] for fold in (False, True)}
    assert rows[True].min_ram_bytes < rows[False].min_ram_bytes
    for fold, text in ((False, plain), (True, folded)):
        assert f"minimum RAM {format_bytes(rows[fold].min_ram_bytes)} of" in text


def test_inplace_rows():
    """fit(inplace=True) traces with elementwise ops in place: DS-CNN train=all, fused, has the
    store-all peak of `poet.extract(inplace=True)`'s graph, below the out-of-place one."""
    from poet.costs import graph_to_problem

    rows = {ip: fit("ds_cnn", "stm32f746", trains=["all"], updates=["fused"], weights=["ram"],
                    inplace=ip, solve=False).rows[0] for ip in (False, True)}
    assert rows[True].inplace and not rows[False].inplace and "(in place)" in rows[True].describe()
    assert rows[True].to_dict()["inplace"] is True
    model, loss_fn, x, y = poet.zoo.get("ds_cnn")
    g = poet.extract(model, loss_fn, x, y, update="fused", inplace=True)
    assert rows[True].store_all_peak_bytes == solver.store_all_peak(graph_to_problem(g, weights="ram"))
    assert rows[True].store_all_peak_bytes < rows[False].store_all_peak_bytes
    with pytest.raises(ValueError, match="inplace must be True or False"):
        fit("ds_cnn", "stm32f746", inplace="yes", solve=False)


def test_top_row_fits_where_the_defaults_do_not_and_verifies():
    report = fit("ds_cnn", "nrf52840", trains=["all", "last", "last2"], executor="serial",
                 time_limit_s=3)
    default = row(report, "all", "ram", "buffered")
    assert not default.fits and default.reason.startswith("RAM: needs")
    top = report.best()
    assert top is not None and top is report.rows[0] and top.peak_ram_bytes <= top.usable_ram_bytes
    _, _, x, y = poet.zoo.get("ds_cnn")  # the same batch fit built (same seed)
    # the top row, and train=all with fused updates: it fits only by recomputing or paging
    tight = row(report, "all", "ram", "fused")
    assert tight.fits and tight.store_all_peak_bytes > tight.usable_ram_bytes
    assert tight.peak_ram_bytes <= tight.usable_ram_bytes
    for r in (top, tight):
        named = dict(r.model.named_parameters())
        opt = torch.optim.SGD([named[n] for n in r.graph.trainable], lr=0.01, foreach=False)
        check = poet.verify(r.graph, r.result.schedule, r.model, x, y, problem=r.problem,
                            optimizer=opt)
        assert check.passed, (r.describe(), check)


def test_fold_bn_rows_by_hand():
    """Folding the sensor CNN's three frozen BatchNorms (16, 32, 64 channels = 112) into their
    bias-free convs: their running statistics (2 x 112 floats + 3 int64 counters) go, their
    weight and bias (2 x 112 floats) become a conv bias of 112 floats."""
    report = fit("sensor_cnn1d", "mkr1000", fold_bn="both", trains=["last"], updates=["fused"],
                 solve=False)
    plain, folded = ([r for r in report.rows if r.fold_bn is fold and r.weights == "flash"][0]
                     for fold in (False, True))
    assert not plain.fold_bn and plain.buffers == 2 * 112 * F32 + 3 * 8
    assert folded.buffers == 0
    assert plain.frozen_params - folded.frozen_params == 112 * F32
    assert plain.min_ram_bytes - folded.min_ram_bytes >= plain.buffers
    assert report.rows[0] is folded  # the smallest shortfall, here: both fit, by minimum RAM
