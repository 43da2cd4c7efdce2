"""Coarse-to-fine planning: scales end at the output size and iterations add up."""

from __future__ import annotations

import pytest

from impasto.daemon.engine import schedule


@pytest.mark.parametrize(
    ("h", "w", "total", "n"),
    [
        (384, 512, 300, None),
        (512, 384, 150, None),
        (48, 64, 9, None),
        (1000, 3000, 600, None),
        (384, 512, 300, 1),
        (384, 512, 40, 3),
        (40, 40, 5, None),
        (384, 512, 2, None),
    ],
)
def test_plan_sums_and_ends_at_the_output(h, w, total, n):
    plan = schedule.plan(h, w, total, n)
    assert sum(s.iterations for s in plan) == total
    assert (plan[-1].height, plan[-1].width) == (h, w)
    assert all(s.iterations >= 1 for s in plan)
    sizes = [s.height * s.width for s in plan]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    if n == 1:
        assert len(plan) == 1


def test_default_512_plan_is_coarse_to_fine_with_cheap_early_scales():
    plan = schedule.plan(384, 512, 200, None)
    assert [max(s.height, s.width) for s in plan] == [128, 181, 256, 362, 512]
    counts = [s.iterations for s in plan]
    # The coarse scales get fewer iterations as they get dearer; the output size gets the
    # largest single share, since only there does the finest texture form.
    assert counts[:-1] == sorted(counts[:-1], reverse=True)
    assert counts[-1] == max(counts) and counts[-1] >= schedule.FINEST_SHARE * 200
    cost = sum(s.iterations * s.height * s.width for s in plan) / (384 * 512)
    assert cost < 100  # half of 200 full-resolution iterations
    aspect = [s.width / s.height for s in plan]
    assert max(aspect) - min(aspect) < 0.02


@pytest.mark.parametrize(
    ("stroke", "edge", "scales", "expected"),
    [
        ("fine", 2048, None, 1),
        ("medium", 512, None, 3),  # 256, 362, 512
        ("large", 512, None, None),  # down to MIN_EDGE
        ("auto", 512, None, 1),
        ("auto", 2048, None, 5),  # from 512 px
        ("large", 512, 2, 2),  # an explicit count wins
    ],
)
def test_stroke_scale_sets_the_coarsest_scale(stroke, edge, scales, expected):
    assert schedule.n_scales(stroke, edge, scales) == expected
    plan = schedule.plan(edge * 3 // 4, edge, 100, schedule.n_scales(stroke, edge, scales))
    if stroke == "medium":
        assert max(plan[0].height, plan[0].width) == edge // 2


def test_a_scale_counts_as_flat_only_when_its_loss_stops_falling():
    falling = [100.0 * 0.97**i for i in range(20)]
    assert not schedule.flattened(falling[:5])  # too few to judge
    assert not schedule.flattened(falling)
    assert schedule.flattened([*falling, *[falling[-1] * 0.999] * schedule.PLATEAU_WINDOW])


def test_a_finest_scale_is_finished_on_its_own_window():
    falling = [100.0 * 0.97**i for i in range(20)]
    assert not schedule.finished(falling)
    flat = [*falling, *[falling[-1] * 0.999] * schedule.FINISH_WINDOW]
    assert schedule.finished(flat) and not schedule.finished(flat[:-1])


def test_only_auto_above_the_one_scale_range_ends_on_a_flat_finest_scale():
    edge = schedule.AUTO_SINGLE_MAX + 1
    assert schedule.finishes("auto", edge, None)
    assert not schedule.finishes("auto", schedule.AUTO_SINGLE_MAX, None)  # one scale
    assert not schedule.finishes("large", edge, None)  # the artist's choice: whole budget
    assert not schedule.finishes("auto", edge, 3)


def test_auto_probes_only_single_scale_jobs_with_room_for_the_coarse_plan():
    budget = schedule.PROBE_MIN_BUDGET
    assert schedule.probes("auto", 512, None, budget, "content")
    assert not schedule.probes("auto", 512, None, budget - 1, "content")  # too short
    assert not schedule.probes("auto", schedule.AUTO_SINGLE_MAX + 1, None, budget, "content")
    assert not schedule.probes("fine", 512, None, budget, "content")  # the artist's choice
    assert not schedule.probes("auto", 512, 1, budget, "content")
    assert not schedule.probes("auto", 512, None, budget, "image")  # already styled


def test_the_probe_compares_its_last_style_loss_with_its_first():
    n = schedule.PROBE_ITERATIONS
    fast = [100.0 * 0.5**i for i in range(n)]
    slow = [100.0 * 0.99**i for i in range(n)]
    assert schedule.probe_ratio(fast) == pytest.approx(0.5 ** (n - 1))
    assert not schedule.starts_slowly(fast) and schedule.starts_slowly(slow)
    assert schedule.probe_ratio(slow[:-1]) == 0.0  # not judged before the probe ends
