"""``segattn bench train``: the cost of a training step for networks x attention modules.

For every chosen network, attention module (``none`` is the plain network) and spatial
dimensionality, one process builds the models side by side and runs training steps
(forward, cross-entropy, backward, AdamW) in interleaved order -- repeat 1 of every model, then
repeat 2, ... -- so that a shared machine's load changes hit all rows alike. It reports:

- seconds per step: the median over the timed repeats, with glibc's ``malloc`` set as
  ``segattn train`` sets it (:func:`segattn.allocator.keep_freed_memory`);
- peak memory of a step: on CPU the growth of the process's peak resident memory (``VmHWM``,
  reset before the step through ``/proc/self/clear_refs``) over its resident memory before the
  step, in one step per row after one that creates the optimiser's state, with glibc told to
  return blocks of 64 kB and more to the system at once and every free page released before
  the step, so that resident memory follows the step's allocations (measured before the timed
  steps, or after them when those run with the user's own allocator settings); on CUDA
  ``torch.cuda.max_memory_allocated`` over the allocation before the step;
- bytes saved for backward: distinct storages packed by autograd during the forward pass
  (``torch.autograd.graph.saved_tensors_hooks``, parameters left out);
- parameters;

and the ratio of each to the plain network (same network, dimensionality and variant). MONAI's
``BasicUNet`` with the same widths (exactly five levels) is the reference row. ``--compile``,
``--channels-last``, ``--bf16`` (autocast) and ``--plain-autograd`` (the attention modules'
plain expressions instead of :mod:`segattn.attention.lean`) each add a measured variant of every
row, compared with the eager float32 row as well.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

PLAIN = "none"
REFERENCE = "basicunet"
VARIANTS = ("eager", "compile", "channels_last", "bf16", "plain_autograd")
MB = 1024**2


def add_train_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``segattn bench train`` on the ``bench`` sub-command's sub-parsers."""
    p = sub.add_parser(
        "train",
        help="time, peak memory and saved bytes of training steps, per network and attention",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--nets", nargs="+", default=["unet"], metavar="NET", help="networks (unet)")
    p.add_argument(
        "--attention",
        nargs="+",
        default=[PLAIN, "scse"],
        metavar="NAME",
        help="attention modules; 'none' (the plain network) is always added (default: none scse)",
    )
    p.add_argument("--dims", nargs="+", type=int, choices=(2, 3), default=[2, 3])
    p.add_argument("--batch-2d", type=int, default=8, metavar="N", help="2D batch (8)")
    p.add_argument("--size-2d", type=int, nargs=2, default=[160, 160], metavar=("H", "W"))
    p.add_argument(
        "--features-2d", type=int, nargs="+", default=[32, 64, 128, 256, 512], metavar="F"
    )
    p.add_argument("--batch-3d", type=int, default=2, metavar="N", help="3D batch (2)")
    p.add_argument("--size-3d", type=int, nargs=3, default=[64, 64, 64], metavar=("D", "H", "W"))
    p.add_argument(
        "--features-3d", type=int, nargs="+", default=[16, 32, 64, 128, 256], metavar="F"
    )
    p.add_argument("--classes", type=int, default=4, metavar="K", help="output classes (4)")
    p.add_argument("--repeats", type=int, default=5, metavar="R", help="timed steps per row (5)")
    p.add_argument("--warmup", type=int, default=1, metavar="W", help="untimed steps first (1)")
    p.add_argument("--threads", type=int, metavar="T", help="torch CPU threads (default torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument("--no-reference", action="store_true", help="skip MONAI's BasicUNet row")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument("--channels-last", action="store_true", help="also measure channels-last")
    p.add_argument("--bf16", action="store_true", help="also measure bfloat16 autocast")
    p.add_argument(
        "--plain-autograd",
        action="store_true",
        help="also measure the attention modules without their lean autograd functions",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_train)
    return p


@dataclass
class Row:
    """One measured configuration."""

    dims: int
    net: str
    attention: str
    variant: str
    params: int = 0
    saved_bytes: int | None = None
    peaks: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    step: Callable[[], None] | None = None

    @property
    def time(self) -> float:
        return statistics.median(self.seconds)

    @property
    def peak(self) -> int:
        return int(statistics.median(self.peaks))


def build_net(
    name: str, spatial_dims: int, classes: int, features: Sequence[int], attention: str
) -> Any:
    """A network by name: ``segattn.nets.create`` when the registry exists, else ``UNet``;
    ``"basicunet"`` is MONAI's ``BasicUNet`` at the same (five) widths."""
    from segattn.errors import SegattnError

    if name == REFERENCE:
        from monai.networks.nets import BasicUNet

        if len(features) != 5:
            raise SegattnError(f"BasicUNet has five levels; got {len(features)} widths")
        with contextlib.redirect_stdout(io.StringIO()):  # BasicUNet prints its widths
            return BasicUNet(spatial_dims, 1, classes, features=(*features, features[0]))
    import segattn.nets as nets

    attn = None if attention == PLAIN else attention
    create = getattr(nets, "create", None)
    if callable(create):
        try:
            return create(name, spatial_dims, 1, classes, attention=attn, features=tuple(features))
        except ValueError as err:
            raise SegattnError(str(err)) from err
    if name != "unet":
        raise SegattnError(f"unknown network {name!r}; available: ['unet']")
    try:
        return nets.UNet(spatial_dims, 1, classes, features=tuple(features), attention=attn)
    except ValueError as err:
        raise SegattnError(str(err)) from err


def _page_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Peak memory of a block over the memory before it (CPU: VmHWM; CUDA: allocator)."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.cpu_ok = device.type == "cpu" and os.path.exists("/proc/self/clear_refs")

    def __enter__(self) -> PeakMemory:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif self.cpu_ok:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")  # reset VmHWM to the current VmRSS
            self.base = _status("VmRSS:")
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        self.peak = 0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        elif self.cpu_ok:
            self.peak = _status("VmHWM:") - self.base


def _variant_context(variant: str, device: Any) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast, the plain autograd expressions, or nothing."""
    import torch

    from segattn.attention.lean import plain_autograd

    if variant == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if variant == "plain_autograd":
        return plain_autograd()
    return contextlib.nullcontext()


def _make_step(row: Row, args: argparse.Namespace, device: Any) -> Callable[[], None]:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.seed)
    if row.dims == 2:
        shape, features = (args.batch_2d, 1, *args.size_2d), args.features_2d
    else:
        shape, features = (args.batch_3d, 1, *args.size_3d), args.features_3d
    net = build_net(row.net, row.dims, args.classes, features, row.attention).to(device).train()
    row.params = sum(p.numel() for p in net.parameters())
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-4)
    image = torch.randn(shape, device=device)
    target = torch.randint(0, args.classes, (shape[0], *shape[2:]), device=device)
    if row.variant == "channels_last":
        fmt = torch.channels_last if row.dims == 2 else torch.channels_last_3d
        net = net.to(memory_format=fmt)
        image = image.contiguous(memory_format=fmt)
    model = torch.compile(net) if row.variant == "compile" else net

    def step() -> None:
        with _variant_context(row.variant, device):
            loss = F.cross_entropy(model(image), target)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

    row.step = step
    return step


def _saved_bytes(row: Row, args: argparse.Namespace, device: Any) -> int | None:
    """Bytes autograd saves in one forward pass of the row's model (None if not measurable)."""
    import torch

    from segattn.layers import SavedTensorMeter

    if row.variant == "compile":
        return None  # compiled graphs save inside AOTAutograd, invisible to the pack hooks
    if row.dims == 2:
        shape, features = (args.batch_2d, 1, *args.size_2d), args.features_2d
    else:
        shape, features = (args.batch_3d, 1, *args.size_3d), args.features_3d
    torch.manual_seed(args.seed)
    net = build_net(row.net, row.dims, args.classes, features, row.attention).to(device).train()
    image = torch.randn(shape, device=device)
    if row.variant == "channels_last":
        fmt = torch.channels_last if row.dims == 2 else torch.channels_last_3d
        net = net.to(memory_format=fmt)
        image = image.contiguous(memory_format=fmt)
    with SavedTensorMeter(exclude=[net]) as meter, _variant_context(row.variant, device):
        out = net(image)
    del out
    return meter.total_bytes


def _memory_pass(rows: list[Row], steps: list[Callable[[], None]], device: Any) -> None:
    """Peak memory of one step per row (after one that creates the optimiser's state), with
    glibc returning freed blocks of 64 kB and more at once and every free page released first."""
    import gc

    from segattn.allocator import release_free_memory, return_freed_memory

    if device.type == "cpu":
        return_freed_memory()
    for row, step in zip(rows, steps, strict=True):
        gc.collect()
        step()
        gc.collect()
        if device.type == "cpu":
            release_free_memory()
        with PeakMemory(device) as mem:
            step()
        row.peaks.append(mem.peak)
    print("bench train: memory pass done", file=sys.stderr)


def measure(args: argparse.Namespace) -> list[Row]:
    """Build every row, measure saved bytes, then run the interleaved steps."""
    import gc

    import torch

    from segattn.allocator import keep_freed_memory, keeping_allowed

    device = torch.device(args.device)
    variants = ["eager"] + [v for v in VARIANTS[1:] if getattr(args, v)]
    attentions = [PLAIN] + [a for a in dict.fromkeys(args.attention) if a != PLAIN]
    rows: list[Row] = []
    for dims in args.dims:
        for variant in variants:
            for net in args.nets:
                rows += [Row(dims, net, a, variant) for a in attentions]
            if not args.no_reference:
                rows.append(Row(dims, REFERENCE, PLAIN, variant))
    for row in rows:
        row.saved_bytes = _saved_bytes(row, args, device)
        gc.collect()
    steps = [_make_step(row, args, device) for row in rows]
    # Timed with glibc's malloc set as `segattn train` sets it (keeping freed memory for the next
    # step). Peak memory needs the opposite setting (freed blocks go back to the system at once,
    # so that resident memory follows the live tensors), which cannot be undone: measured first
    # when the timed steps will keep memory, else after them, so that these run with the
    # allocator the user chose (SEGATTN_MALLOC=default, glibc's MALLOC_* variables).
    keep = device.type == "cpu" and keeping_allowed()
    if keep:
        _memory_pass(rows, steps, device)
        args.kept_memory = keep_freed_memory()
    passes = args.warmup + args.repeats
    for repeat in range(passes):
        for row, step in zip(rows, steps, strict=True):
            gc.collect()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            faults = _page_faults()
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if repeat >= args.warmup:
                row.seconds.append(time.perf_counter() - start)
                row.faults.append(_page_faults() - faults)
        print(f"bench train: pass {repeat + 1}/{passes} done", file=sys.stderr)
    if not keep:
        _memory_pass(rows, steps, device)
    return rows


def format_rows(rows: Sequence[Row]) -> str:
    """The table: one line per row with its ratios to the plain network of its group."""
    plain = {(r.dims, r.variant, r.net): r for r in rows if r.attention == PLAIN}
    eager = {(r.dims, r.net, r.attention): r for r in rows if r.variant == "eager"}
    header = (
        f"{'dims':>4} {'network':<10} {'attention':<9} {'variant':<13} {'s/step':>8} {'x':>6} "
        f"{'peak MB':>8} {'x':>6} {'saved MB':>9} {'x':>6} {'params':>10} {'x':>6} {'x eager':>8} "
        f"{'faults':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        base = plain.get((r.dims, r.variant, "unet" if r.net == REFERENCE else r.net), r)

        def ratio(a: float | None, b: float | None) -> str:
            return f"{a / b:>6.2f}" if a is not None and b else f"{'-':>6}"

        saved = f"{r.saved_bytes / MB:>9.1f}" if r.saved_bytes is not None else f"{'-':>9}"
        ref = eager.get((r.dims, r.net, r.attention))
        vs_eager = ratio(r.time, ref.time) if ref is not None and ref is not r else f"{'':>6}"
        lines.append(
            f"{r.dims:>4} {r.net:<10} {r.attention:<9} {r.variant:<13} {r.time:>8.3f} "
            f"{ratio(r.time, base.time)} {r.peak / MB:>8.1f} {ratio(r.peak, base.peak)} {saved} "
            f"{ratio(r.saved_bytes, base.saved_bytes)} {r.params:>10,} "
            f"{ratio(r.params, base.params)} {vs_eager:>8} "
            f"{int(statistics.median(r.faults)) if r.faults else 0:>8,}".rstrip()
        )
    return "\n".join(lines)


def run_train(args: argparse.Namespace) -> int:
    """``segattn bench train``: measure and print the table."""
    import torch

    from segattn.attention import available
    from segattn.errors import SegattnError

    sizes = [args.batch_2d, args.batch_3d, *args.size_2d, *args.size_3d, args.repeats]
    if min(sizes) < 1 or args.classes < 2 or args.warmup < 0:
        raise SegattnError("batches, sizes and --repeats must be >= 1, --classes >= 2")
    unknown = sorted(set(args.attention) - {PLAIN, *available()})
    if unknown:
        raise SegattnError(f"unknown attention {unknown}; valid names: {[PLAIN, *available()]}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SegattnError("--device cuda: CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compile:
        from segattn.training.compile import use_project_inductor_cache

        use_project_inductor_cache()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    sizes_text = []
    if 2 in args.dims:
        sizes_text.append(
            f"2D {args.batch_2d}x1x{'x'.join(map(str, args.size_2d))} widths {args.features_2d}"
        )
    if 3 in args.dims:
        sizes_text.append(
            f"3D {args.batch_3d}x1x{'x'.join(map(str, args.size_3d))} widths {args.features_3d}"
        )
    print(
        f"bench train: {'; '.join(sizes_text)}; {args.classes} classes; forward + cross-entropy "
        f"+ backward + AdamW; device {args.device}, {torch.get_num_threads()} threads; "
        f"median of {args.repeats} interleaved steps after {args.warmup} warm-up; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    try:
        rows = measure(args)
    except ValueError as err:  # e.g. a size that a network's norms cannot train on
        raise SegattnError(f"bench train: {err}") from err
    print(format_rows(rows))
    print(
        "x: ratio to the plain network (attention 'none') of the same dims, network and variant; "
        "basicunet rows to the plain unet; 'x eager': time ratio to the same row in eager fp32; "
        "faults: minor page faults per timed step (median)"
    )
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    if getattr(args, "kept_memory", False):
        print("timed with malloc keeping freed memory, as in segattn train (segattn.allocator)")
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    sys.stdout.flush()
    return 0
