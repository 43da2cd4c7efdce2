"""Tiling and the memory budget: a tiled job is the untiled job; too large is tiled or refused.

Real VGG19 weights, real images, float32 so the comparison is not blurred by bfloat16's
rounding. Peak memory itself is measured in bench/bench_memory.py, not here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from impasto.daemon.engine import CancelToken, Engine, allocator, eta, memory, schedule, tiling
from impasto.daemon.engine.engine import CALIBRATION_ITERATIONS
from impasto.daemon.engine.losses import gram
from impasto.daemon.engine.models import available_layers
from impasto.daemon.engine.objective import Objective
from impasto.daemon.engine.weights import load_extractor
from impasto.shared.errors import TOO_LARGE_FOR_DEVICE, ImpastoError
from impasto.shared.options import JobOptions


def load(path, size) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize(size), dtype=np.float32) / 255


@pytest.fixture(scope="module")
def content(images_dir):
    return load(images_dir / "tubingen.jpg", (200, 150))


@pytest.fixture(scope="module")
def style(images_dir):
    return load(images_dir / "starry_night.jpg", (120, 96))


@pytest.fixture(scope="module")
def vgg():
    return load_extractor("vgg19", "original", "avg", available_layers("vgg19")["conv5_1"])


def test_tile_cores_partition_the_picture_and_windows_are_aligned():
    tiles = tiling.grid(300, 470, 128, 96, 16)
    owner = np.zeros((300, 470), int)
    for t in tiles:
        owner[t.y0 : t.y1, t.x0 : t.x1] += 1
        assert t.wy0 % 16 == 0 and t.wx0 % 16 == 0
        assert t.wy0 == max(0, t.y0 - 96) and t.wx1 == min(470, t.x1 + 96)
    assert (owner == 1).all()
    assert len(tiles) == 3 * 4


def test_halo_covers_the_receptive_field(vgg):
    # conv5_1's receptive field is 156 px: half of it plus a 16 px cell, rounded to 16
    assert tiling.halo(vgg, available_layers("vgg19")["conv5_1"]) == 96
    assert tiling.alignment(vgg) == 16


@pytest.mark.parametrize("gram_core", [None, 128, 200], ids=["same", "larger", "one window"])
def test_tiled_loss_and_gradient_equal_the_whole_pictures(
    vgg, content, style, images_dir, gram_core
):
    """The two-pass tiled objective is the whole picture's, value and gradient, whether
    pass 1 (the Gram sums) runs in pass 2's tiles, in larger ones or in one window."""
    torch.manual_seed(0)
    prep = vgg.preprocessing
    to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    c = prep.to_input(to_t(content))
    x = (c + 20 * torch.randn_like(c)).detach()  # a picture away from the content
    style_layers = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
    with torch.no_grad():
        feats = vgg(prep.to_input(to_t(style)), style_layers)
        targets = {k: gram(v) for k, v in feats.items()}
        content_targets = vgg(c, ["conv4_2"])
    weights = dict.fromkeys(style_layers, 1.0)
    whole = Objective(vgg, content_targets, targets, weights, 0.05, 10.0, 2.0)
    grad_whole, losses_whole = whole.value_and_grad(x)
    tiles = tiling.grid(150, 200, 64, 96, 16)
    assert len(tiles) == 3 * 4
    gram_tiles = tiling.grid(150, 200, gram_core, 96, 16) if gram_core else None
    tiled = tiling.TiledObjective(
        vgg, c, ["conv4_2"], targets, weights, 0.05, 10.0, 2.0, tiles, gram_tiles=gram_tiles
    )
    grad_tiled, losses_tiled = tiled.value_and_grad(x)
    for term in ("content", "style", "tv", "total"):
        assert losses_tiled[term] == pytest.approx(losses_whole[term], rel=1e-4), term
    assert grad_tiled is not None and grad_whole is not None  # nothing interrupts them
    err = (grad_tiled - grad_whole).abs().max() / grad_whole.abs().max()
    assert err < 1e-4, f"tiled gradient differs from the whole picture's by {err:.2e}"


def test_a_tiled_job_matches_the_untiled_job(content, style):
    engine = Engine()
    opts = JobOptions(size=160, iterations=3, scales=1, frames=0, precision="float32", seed=1)
    whole = engine.run(content, [style], opts)
    tiled = engine.run(content, [style], opts.replace(tile_size=64))
    assert whole.memory["tiles"] == 1 and tiled.memory["tiles"] == 6
    assert tiled.losses["total"] == pytest.approx(whole.losses["total"], rel=1e-4)
    assert np.abs(tiled.image - whole.image).max() < 1e-3


class CancelAfterChecks(CancelToken):
    """Reads as cancelled from its ``n``-th check on: a cancel arriving mid-iteration."""

    def __init__(self, n: int):
        super().__init__()
        self.checks, self.n = 0, n

    @property
    def cancelled(self) -> bool:
        self.checks += 1
        return self.checks >= self.n


def test_a_cancel_stops_a_tiled_iteration_between_tiles(content, style):
    token = CancelAfterChecks(3)  # the job's start, the first tile, then cancelled
    opts = JobOptions(size=160, iterations=3, scales=1, frames=0, tile_size=64)
    result = Engine().run(content, [style], opts, cancel=token)
    assert result.cancelled and result.iterations == 0
    # the start, two tiles' checks, the loop's check after the interrupted evaluation:
    # the other four of the six tiles never ran
    assert token.checks == 4
    assert result.image.shape == (120, 160, 3)


def test_a_job_over_the_budget_is_refused_before_it_starts_with_a_size_that_fits(content, style):
    engine = Engine(memory_budget=1536 * memory.MB)
    with pytest.raises(ImpastoError) as info:
        engine.run(content, [style], JobOptions(size=4096, iterations=1, frames=0))
    assert info.value.code == TOO_LARGE_FOR_DEVICE
    message = str(info.value)
    assert "1.5 GB" in message
    asked = re.search(r"ask for (\d+) px", message)
    assert asked, message
    suggested = int(asked[1])
    assert 256 <= suggested < 4096
    # the suggested size is planned within the budget; 256 px more is not
    plan = engine.preflight(150, 200, JobOptions(size=suggested, iterations=1))
    assert plan["memory_estimate"] <= 1536 * memory.MB
    with pytest.raises(ImpastoError):
        engine.preflight(150, 200, JobOptions(size=suggested + 256, iterations=1))


def test_the_content_counts_at_its_own_size_and_alone_can_be_too_large():
    # An editor hands over its layer at full size whatever the output size: the job holds
    # it to the end, so the same small output plans more memory from a larger layer...
    engine = Engine(memory_budget=1536 * memory.MB)
    small = engine.preflight(150, 200, JobOptions(size=128, iterations=1))
    large = engine.preflight(3000, 4000, JobOptions(size=128, iterations=1))
    extra = large["memory_estimate"] - small["memory_estimate"]
    assert extra == (3000 * 4000 - 150 * 200) * memory.INPUT_BYTES_PER_PX
    # ...and where the layer alone leaves no room, the error says so, not "ask for 64 px"
    tight = Engine(memory_budget=1200 * memory.MB)
    tight.preflight(150, 200, JobOptions(size=128, iterations=1))
    with pytest.raises(ImpastoError) as info:
        tight.preflight(3000, 4000, JobOptions(size=128, iterations=1))
    assert info.value.code == TOO_LARGE_FOR_DEVICE
    assert "content image" in str(info.value) and "ask for" not in str(info.value)
    assert "1.2 GB" in str(info.value)


def test_the_job_option_lowers_but_never_raises_the_engines_budget():
    engine = Engine(memory_budget=2048 * memory.MB)
    low = engine.preflight(768, 1024, JobOptions(size=1024, memory_budget=1700))
    high = engine.preflight(768, 1024, JobOptions(size=1024, memory_budget=1 << 20))
    assert low["memory_budget"] == 1700 * memory.MB
    assert high["memory_budget"] == 2048 * memory.MB


def test_a_large_job_is_tiled_at_its_finest_scales_only():
    engine = Engine(memory_budget=3 * 1024 * memory.MB)
    plan = engine.preflight(1536, 2048, JobOptions(size=2048))
    assert plan["memory_estimate"] <= plan["memory_budget"]
    tiles = [s["tile"] for s in plan["scales"]]
    assert tiles[0] is None and tiles[-1] is not None
    assert plan["seconds"] > 0


def test_the_cpus_default_budget_grows_with_the_machine_but_leaves_the_rest_free():
    gb, own = memory.GB, 200 * memory.MB
    # a 4 GB laptop keeps the floor, or less when less is free
    assert memory.cpu_budget(4 * gb, 8 * gb, own) == memory.CPU_BUDGET_FLOOR
    assert memory.cpu_budget(4 * gb, 2 * gb, own) == int(1.5 * gb) + own
    # a 32 GB workstation gets half its RAM, unless an editor already holds most of it
    assert memory.cpu_budget(32 * gb, 30 * gb, own) == 16 * gb
    assert memory.cpu_budget(32 * gb, 6 * gb, own) == int(4.5 * gb) + own
    # no /proc/meminfo (not Linux): the floor
    assert memory.cpu_budget(None, None, own) == memory.CPU_BUDGET_FLOOR


def test_pass_one_runs_in_the_largest_windows_the_budget_leaves():
    # Pass 1 needs no gradient, so where pass 2 must run in small tiles the Gram sums
    # take fewer, larger windows, as large as the budget allows and never over it.
    limits = memory.Limits("bfloat16", 3 * memory.GB, halo=96, align=16, can_tile=True)
    plan = memory.plan_scale(1536, 2048, limits)
    assert plan is not None and plan.tile is not None and plan.gram_tile is not None
    assert plan.gram_tile > plan.tile
    args = (1536, 2048, "bfloat16", plan.tile, 96, plan.history, memory.BASE_BYTES, 16)
    assert plan.peak == memory.estimate(*args, plan.gram_tile) <= limits.budget
    if plan.gram_tile < 2048:  # not yet one window: a larger one would not fit
        assert memory.estimate(*args, plan.gram_tile + 16) > limits.budget
    assert len(tiling.grid(1536, 2048, plan.gram_tile, 96, 16)) < len(
        tiling.grid(1536, 2048, plan.tile, 96, 16)
    )


def test_a_budget_that_holds_the_whole_pass_runs_the_finest_scale_untiled():
    """A budget that can hold the whole pass gets it, keeping the heap's freed pages; 3
    GB splits the network at the finest scale, planned at the time of a whole pass that
    returns its pages (a split iteration measured 0.85-1.05x of it, eta.SPLIT_SHARE);
    less than that tiles the whole network, planned far slower (its Gram pass and 96 px
    halos)."""

    def plan(megabytes: int) -> dict:
        opts = JobOptions(size=2048, precision="bfloat16")  # the same plans on any CPU
        return Engine(memory_budget=megabytes * memory.MB).preflight(1536, 2048, opts)

    whole, split, tiled = plan(12 * 1024), plan(3 * 1024), plan(2400)
    assert [s["tile"] for s in whole["scales"]] == [None] * len(whole["scales"])
    # a whole scale keeps freed pages where the budget holds what the heap then keeps
    kept = allocator.can_keep_pages()
    assert [s["keep_pages"] for s in whole["scales"]] == [kept] * len(whole["scales"])
    assert split["scales"][0]["keep_pages"] == kept and not split["scales"][-1]["keep_pages"]
    assert split["scales"][-1]["tile"] is not None and split["scales"][-1]["split"] == 2
    assert tiled["scales"][-1]["tile"] is not None and tiled["scales"][-1]["split"] is None
    # the split costs what a whole pass that returns its pages does; the roomy whole
    # plan keeps them where it can, which is faster still (eta.KEPT_SHARE)
    share = eta.KEPT_SHARE if kept else 1.0
    assert split["seconds"] == pytest.approx(whole["seconds"] / share, rel=0.05)
    assert tiled["seconds"] > 1.5 * whole["seconds"]


def test_a_whole_scale_keeps_freed_pages_only_where_the_budget_holds_what_they_cost():
    limits = memory.Limits("bfloat16", 0, halo=96, align=16, can_tile=True, can_keep_pages=True)
    returned = memory.estimate(1536, 2048, "bfloat16", None, 96, 20)
    kept = memory.estimate(1536, 2048, "bfloat16", None, 96, 20, keep_pages=True)
    assert kept > returned
    roomy = memory.plan_scale(1536, 2048, replace(limits, budget=kept))
    assert roomy is not None and roomy.keep_pages and roomy.peak == kept
    assert roomy.tile is None and roomy.history == 20
    # room for the whole pass but not for the heap's holes: whole, pages returned
    snug = memory.plan_scale(1536, 2048, replace(limits, budget=kept - 1))
    assert snug is not None and not snug.keep_pages and snug.peak == returned
    assert snug.tile is None and snug.history == 20
    # where glibc's settings cannot be made (or on a GPU), never
    off = memory.plan_scale(1536, 2048, replace(limits, budget=kept, can_keep_pages=False))
    assert off is not None and not off.keep_pages and off.peak == returned


def test_eta_weights_scales_by_cost_and_learns_speed():
    costs = [eta.scale_cost(64, 64, 10, None, 2), eta.scale_cost(512, 512, 10, None, 2)]
    e = eta.Eta(costs, prior=1e-6)
    before = e.remaining()
    unit = costs[0].per_iteration
    for _ in range(10):  # the machine turns out 3x slower than the prior
        e.iteration(0, 3e-6 * unit)
    e.targets(1)
    left = e.remaining()
    truth = 3e-6 * costs[1].per_iteration * 10
    assert abs(left - truth) / truth < 0.35
    assert left > before  # the prior was optimistic; the ETA grew with the evidence


def test_eta_keeps_the_learned_speed_when_the_plan_changes():
    one = [eta.scale_cost(256, 256, 40, None, 2)]
    e = eta.Eta(one, prior=1e-6)
    for _ in range(11):  # the probe: the machine runs at 2e-6 s per unit
        e.iteration(0, 2e-6 * one[0].per_iteration)
    coarse = [eta.scale_cost(128, 128, 15, None, 2), eta.scale_cost(256, 256, 14, None, 2)]
    e.replan(coarse)
    units = sum(c.per_iteration * c.iterations + c.targets for c in coarse)
    assert e.remaining() == pytest.approx(units * e.speed)
    assert e.speed == pytest.approx(2e-6, rel=0.25)


def test_eta_expects_a_finishing_job_to_end_its_finest_scale_early():
    costs = [eta.scale_cost(128, 128, 20, None, 2), eta.scale_cost(256, 256, 60, None, 2)]
    fine = costs[1]
    e = eta.Eta(costs, prior=1e-6, finest_expected=12)
    planned = eta.Eta(costs, prior=1e-6)
    saved = 48 * fine.per_iteration * 1e-6
    assert planned.total_before() - e.total_before() == pytest.approx(saved)
    for _ in range(20):
        e.iteration(0, 1e-6 * costs[0].per_iteration)
    e.targets(1)
    assert e.remaining() == pytest.approx(12 * fine.per_iteration * e.speed)  # targets built
    for _ in range(15):  # past the expected count and not flat yet: one more at a time
        e.iteration(1, 1e-6 * fine.per_iteration)
    assert e.remaining() == pytest.approx(fine.per_iteration * e.speed)
    e.finish()  # flat: the run ends here
    assert e.remaining() == 0


def test_a_preflight_expects_a_long_job_to_end_where_its_finest_loss_flattens(monkeypatch):
    """The "fine" preset at 2048 px ends once its finest loss is flat, at about
    FINISH_EXPECTED of its 123 planned finest iterations (schedule.py): the time before
    the run counts those; the standard preset's 62 all run, and the plan says nothing."""
    engine = Engine(memory_budget=3 * 1024 * memory.MB)

    def plan(**kw):
        return engine.preflight(1536, 2048, JobOptions(size=2048, precision="bfloat16", **kw))

    fine, standard = plan(quality="fine"), plan()
    assert fine["scales"][-1]["iterations"] > schedule.FINISH_EXPECTED
    assert fine["finest_expected"] == schedule.FINISH_EXPECTED
    assert standard["scales"][-1]["iterations"] < schedule.FINISH_EXPECTED
    assert standard["finest_expected"] is None
    assert plan(quality="fine", stroke_scale="medium")["finest_expected"] is None  # no rule
    monkeypatch.setattr(schedule, "FINISH_EXPECTED", None)
    every = plan(quality="fine")
    assert every["finest_expected"] is None and every["seconds"] > fine["seconds"]


def test_calibrate_gives_a_fresh_engines_estimate_the_speed_it_measured():
    engine = Engine()
    options = JobOptions(size=512, iterations=100, scales=1)
    guessed = engine.preflight(384, 512, options)
    result = engine.calibrate()
    measured = engine.preflight(384, 512, options)
    assert (guessed["speed_measured"], measured["speed_measured"]) == (False, True)
    assert result.iterations == CALIBRATION_ITERATIONS and result.stop_reason == "done"
    (speed,) = engine._speeds.values()  # one (device, arithmetic) measured
    assert measured["seconds"] == pytest.approx(
        guessed["seconds"] * speed / eta.DEFAULT_SECONDS_PER_UNIT
    )
    loads = engine.models_loaded
    engine.run(
        np.random.default_rng(1).random((48, 64, 3)),
        [np.random.default_rng(2).random((48, 64, 3))],
        JobOptions(size=64, iterations=1, frames=0),
    )
    assert engine.models_loaded == loads  # the network a default job needs was loaded


def test_eta_costs_a_tiled_scale_by_its_windows_and_both_passes():
    engine = Engine(memory_budget=16 * 1024 * memory.MB)
    whole = engine.eta_costs(576, 768, JobOptions(size=768, iterations=5, scales=1))[-1]
    tiled_opts = JobOptions(size=768, iterations=5, scales=1, tile_size=256)
    tiled = engine.eta_costs(576, 768, tiled_opts)[-1]
    # 9 windows of up to 448 px (256 + two 96 px halos) seen in two passes: measured at
    # 3.9x the untiled iteration's time (eta.FORWARD_SHARE); the model must say 3-5x.
    assert 3.0 < tiled.per_iteration / whole.per_iteration < 5.0
    assert tiled.iterations == whole.iterations == 5


@pytest.mark.skipif(not allocator.can_keep_pages(), reason="needs glibc's mallopt")
def test_eta_costs_a_whole_scale_that_keeps_its_pages_less():
    """A coarse scale that keeps its pages runs faster than the split scales after it;
    the ETA must not learn that speed as the whole job's (eta.KEPT_SHARE)."""
    opts = JobOptions(size=768, iterations=5, scales=1, precision="bfloat16")
    base = memory.BASE_BYTES + 576 * 768 * memory.INPUT_BYTES_PER_PX
    returned = memory.estimate(576, 768, "bfloat16", None, 0, 20, base)
    kept = memory.estimate(576, 768, "bfloat16", None, 0, 20, base, keep_pages=True)
    roomy = Engine(memory_budget=kept).eta_costs(576, 768, opts)[-1]
    snug = Engine(memory_budget=(returned + kept) // 2).eta_costs(576, 768, opts)[-1]
    assert snug.per_iteration == eta.FIXED_PX + 576 * 768
    assert roomy.per_iteration == pytest.approx(eta.FIXED_PX + eta.KEPT_SHARE * 576 * 768)


_ARENAS = """
import ctypes, sys, tempfile, threading
import torch
from impasto.daemon.engine import allocator
if sys.argv[1] == "one":
    assert allocator.limit_arenas()
held = []
def work():
    held.append(torch.ones(1 << 16))
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile(suffix=".xml") as f:
    stream = libc.fopen(f.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(open(f.name).read().count("<heap nr="))
"""


@pytest.mark.skipif(not allocator.limit_arenas(), reason="needs glibc's mallopt")
def test_threads_share_one_malloc_arena_so_the_budget_holds():
    def heaps(mode: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _ARENAS, mode], capture_output=True, text=True, check=True
        )
        return int(out.stdout.strip())

    assert heaps("default") > 1  # glibc gives threads arenas of their own ...
    assert heaps("one") == 1  # ... unless the engine capped them


_PRIMITIVES = """
import os
from impasto.daemon.engine import Engine
Engine()
print(os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"))
"""


@pytest.mark.parametrize("preset", [None, "7"], ids=["engine's cap", "user's setting kept"])
def test_the_engine_caps_onednns_primitive_cache_before_its_first_convolution(preset):
    """oneDNN's cached convolutions, hundreds of MB with AMX, would grow with every tile
    shape a job builds (allocator.py); the engine bounds them unless the user chose."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("PRIMITIVE_CACHE_CAPACITY")}
    if preset is not None:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = preset
    out = subprocess.run(
        [sys.executable, "-c", _PRIMITIVES], capture_output=True, text=True, check=True, env=env
    )
    expected = preset or str(allocator.PRIMITIVE_CACHE_CAPACITY)
    assert out.stdout.strip() == expected


_HOLES = """
import ctypes
from impasto.daemon.engine import allocator
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
chunks, keepers = [], []
for _ in range(4000):  # 64 KB blocks with a small one after each: holes, not a free top
    block = libc.malloc(64 << 10)
    ctypes.memset(block, 1, 64 << 10)
    chunks.append(block)
    keepers.append(libc.malloc(64))
for block in chunks:
    libc.free(block)
held = rss()
released = allocator.release_free_pages()
print(released, (held - rss()) >> 20)
"""


@pytest.mark.skipif(not allocator.limit_arenas(), reason="needs glibc's malloc")
def test_free_heap_pages_go_back_to_the_system_between_scales():
    """The pages of freed blocks inside the heap stay counted until they are released."""
    out = subprocess.run([sys.executable, "-c", _HOLES], capture_output=True, text=True, check=True)
    released, dropped_mb = out.stdout.split()
    assert released == "True"
    assert int(dropped_mb) > 200  # of the 250 MB freed in holes


_REUSE = """
import resource, sys
import torch
from impasto.daemon.engine import allocator
from impasto.daemon.engine.models import available_layers
from impasto.daemon.engine.weights import load_extractor
model = load_extractor("vgg19", "original", "avg", available_layers("vgg19")["conv2_1"])
x = torch.rand(1, 3, 384, 384)  # float32: conv1's activations are 36 MB each
def faults_of_a_pass():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    xi = x.clone().requires_grad_(True)
    out = model.body(xi)
    torch.autograd.grad(out, xi, torch.ones_like(out))
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
assert allocator.keep_freed_pages(sys.argv[1] == "kept")
for _ in range(4):
    faults_of_a_pass()
least = min(faults_of_a_pass() for _ in range(3))
held = rss()
assert allocator.keep_freed_pages(False)
allocator.release_free_pages()
print(least, (held - rss()) >> 20)
"""


@pytest.mark.skipif(not allocator.can_keep_pages(), reason="needs glibc's mallopt")
def test_kept_pages_are_reused_by_the_next_pass_and_given_back_after():
    """Activations over glibc's threshold are mapped afresh, their pages faulted in, in
    every pass; kept, the next pass reuses them, and they go back once the engine stops
    keeping them (allocator.keep_freed_pages)."""

    def run(mode: str) -> tuple[int, int]:
        out = subprocess.run(
            [sys.executable, "-c", _REUSE, mode], capture_output=True, text=True, check=True
        )
        faults, dropped_mb = out.stdout.split()
        return int(faults), int(dropped_mb)

    returned_faults, _ = run("returned")
    kept_faults, dropped_mb = run("kept")
    assert returned_faults > 20000  # 4 KB pages: 80 MB and more each pass
    assert kept_faults < 1000
    assert dropped_mb > 200  # what the kept passes held (about 400 MB) went back


def test_a_job_leaves_glibc_returning_freed_pages(content, style):
    engine = Engine()
    result = engine.run(content, style, JobOptions(size=64, iterations=2, scales=1))
    assert result.memory["keep_pages"] == int(allocator.can_keep_pages())
    assert not allocator.pages_kept()
