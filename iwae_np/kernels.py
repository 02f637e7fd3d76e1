"""The fast tier: the same math as the reference functions, in fewer and cheaper passes.

A student reads the reference forms (``params.block``, one ``nets.MLP`` layer a(h W + b),
``distributions.bernoulli_logpmf``). The models run these kernels by default, because they were
measured faster (docs/design.md §1, §2); ``VAE(..., fast=False)`` runs the same model on the
reference tier. ``tests/test_kernels.py`` asserts every kernel equals its reference in values and
gradients, first and second order, in float32 and float64.

Each kernel is an autograd primitive with a hand-derived VJP. The VJPs take a fast in-place path
in the usual case and a traceable ``autograd.numpy`` path when they are differentiated again
(their input or cotangent is itself a box), so grad-of-grad works through every kernel.
"""

import contextlib
import math
import os
import sys
import threading

import autograd.numpy as anp
import numpy as np
from autograd.extend import SparseObject, defvjp, defvjp_argnums, primitive, vspace
from autograd.tracer import Box, getval

from . import threads
from .numerics import derivative_levels, sigmoid

# ---------------------------------------------------------------- reading θ: the sparse block VJP


@primitive
def block(theta, start, stop, shape):
    """θ[start:stop] viewed as an array of ``shape`` (a view: no copy).

    Replaces ``params.block`` (``theta[start:stop].reshape(shape)``). Autograd's slice VJP adds
    each slice into θ's gradient with ``np.add.at``, an unbuffered indexed loop; this VJP adds
    its slice with ``+=`` on a contiguous view of θ's one gradient accumulator
    (docs/design.md §1).
    """
    return theta[start:stop].reshape(shape)


@primitive
def _block_cotangent(g, start, stop, shape, space):
    """θ's gradient contribution from one block: g added into [start:stop] of the accumulator."""

    def add_into(total):
        # reshape the contiguous slice of total, not g: a transposed g (as matrix-product
        # gradients often are) would be copied by ravel
        total[start:stop].reshape(shape)[...] += g
        return total

    return SparseObject(space, add_into)


defvjp(
    block,
    lambda ans, theta, start, stop, shape: (
        lambda g: _block_cotangent(g, start, stop, shape, vspace(theta))
    ),
)
# Differentiating the cotangent again reads the same block back (it is linear in g).
defvjp(
    _block_cotangent,
    lambda ans, g, start, stop, shape, space: lambda gg: block(gg, start, stop, shape),
)


# ---------------------------------------------------------------- one dense layer, fused


@primitive
def dense(theta, h, W_block, b_block, activation=None):
    """a(h W + b), with W and b read from θ: one primitive for what the reference MLP writes as
    ``block``, ``block``, ``dot``, ``+`` and the activation (five autograd operations). The
    derivatives: tanh' = 1 − tanh², from the saved output (no cosh); relu' = 1 where the output
    is positive, else 0 (as the reference ``nets.relu``).

    Replaces one layer of ``nets.MLP`` on the reference tier. theta: (P,); h: (rows, d_in);
    W_block, b_block: (start, stop, shape) of W (d_in, d_out) and b (d_out,) in θ, adjacent;
    activation: None, "tanh" or "relu". -> (rows, d_out). Fewer operations means less of
    autograd's per-operation bookkeeping, which dominates a step at small k. The derivatives:
    tanh' = 1 − tanh², from the saved output (no cosh); relu' = 1 where the output is positive,
    else 0, as the reference ``nets.relu``.
    """
    W = theta[W_block[0] : W_block[1]].reshape(W_block[2])
    out = h @ W
    out += theta[b_block[0] : b_block[1]]
    if activation == "tanh":
        np.tanh(out, out=out)
    elif activation == "relu":
        np.maximum(out, 0, out=out)
    return out


def _dense_vjps(argnums, ans, args, kwargs):
    """Both cotangents from one pre-activation gradient g' = g ⊙ a'(pre):
    ∂/∂θ: W ← hᵀ g', b ← Σ_rows g' (added in place into θ's accumulator); ∂/∂h: g' Wᵀ."""
    theta, h, W_block, b_block = args[:4]
    activation = args[4] if len(args) > 4 else kwargs.get("activation")
    W = theta[W_block[0] : W_block[1]].reshape(W_block[2])
    space = vspace(theta)

    def vjp(g):
        traced = any(isinstance(v, Box) for v in (g, ans, theta, h))
        xp = anp if traced else np
        if activation == "tanh":
            g_pre = g * (1 - ans * ans)
        elif activation == "relu":
            g_pre = g * (getval(ans) > 0)  # relu' is a constant 0/1 mask
        else:
            g_pre = g
        out = []
        for argnum in argnums:
            if argnum == 0 and traced:  # differentiated again: a dense, traceable θ gradient
                out.append(
                    _dense_theta_cotangent(
                        anp.dot(anp.transpose(h), g_pre),
                        anp.sum(g_pre, axis=0),
                        W_block,
                        b_block,
                        space.size,
                    )
                )
            elif argnum == 0:
                out.append(
                    _dense_theta_sparse(h.T @ g_pre, g_pre.sum(axis=0), W_block, b_block, space)
                )
            else:
                out.append(xp.dot(g_pre, xp.transpose(W)))
        return tuple(out)

    return vjp


def _dense_theta_sparse(g_W, g_b, W_block, b_block, space):
    def add_into(total):
        total[W_block[0] : W_block[1]].reshape(W_block[2])[...] += g_W
        total[b_block[0] : b_block[1]] += g_b
        return total

    return SparseObject(space, add_into)


def _dense_theta_cotangent(g_W, g_b, W_block, b_block, size):
    """θ's gradient from one layer as a dense vector (W then b are adjacent in θ)."""
    dtype = np.result_type(getval(g_W))
    return anp.concatenate(
        [np.zeros(W_block[0], dtype), anp.ravel(g_W), g_b, np.zeros(size - b_block[1], dtype)]
    )


defvjp_argnums(dense, _dense_vjps)


# ---------------------------------------------------------------- the Bernoulli log-likelihood


def unbroadcast(g, shape):
    """Sum a gradient over the axes that broadcasting added or stretched, back to ``shape``."""
    while anp.ndim(g) > len(shape):
        g = anp.sum(g, axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and anp.shape(g)[axis] != 1:
            g = anp.sum(g, axis=axis, keepdims=True)
    return g


@primitive
def bernoulli_log_terms(x, logits):
    """With ``sum_last``, replaces ``distributions.bernoulli_logpmf``. Elementwise,

        log Bern(x_d; σ(ℓ_d)) = x_d ℓ_d − softplus(ℓ_d) = log σ(s_d ℓ_d),   s = 2x − 1.

    For x ∈ {0, 1} the sign s ∈ {−1, +1} folds both cases into one log-sigmoid: log σ(ℓ) when
    x = 1 and log σ(−ℓ) = log(1 − σ(ℓ)) when x = 0. With t = s ℓ,

        log σ(t) = min(t, 0) − log1p(e^{−|t|})          (no exp of a positive number)

    This runs on the largest array of an IWAE step, (k, n, x_dim), so every pass counts: two
    buffers, each pass written in place (docs/design.md §2).
    """
    t = (2 * x - 1) * logits
    softplus_part = np.abs(t)
    np.negative(softplus_part, out=softplus_part)
    np.exp(softplus_part, out=softplus_part)
    log1p_unit(softplus_part, softplus_part)  # log1p(e^{−|t|})
    np.minimum(t, 0, out=t)
    t -= softplus_part
    return t


def log1p_unit(e, out):
    """out ← log1p(e) for e in [0, 1] (as exp(−|t|) is), elementwise; returns out.

    float64: NumPy's log1p. float32: NumPy's float32 log1p runs one element at a time, 4.5× the
    time of its vectorized log (184 µs against 41 µs per 15680 entries on the reference machine),
    so it is computed from log instead, by Kahan's formula: with u = 1 + e rounded,

        log1p(e) = log(u) · e / (u − 1)      (and e itself where u rounds to 1)

    The rounding of u cancels between log(u) and u − 1, which is exact here (Sterbenz), so the
    result keeps log's accuracy to a few ulps (Goldberg 1991, Theorem 4)."""
    if e.dtype != np.float32:
        return np.log1p(e, out=out)
    u = np.add(e, 1)
    step = np.subtract(u, 1)  # u − 1, exact
    np.log(u, out=u)
    np.multiply(u, e, out=u)
    np.copyto(out, e)  # where u rounds to 1: log1p(e) = e to within e²/2
    np.divide(u, step, out=out, where=step != 0)
    return out


def _bernoulli_log_terms_vjp(ans, x, logits):
    """∂/∂ℓ log σ(s ℓ) = s σ(−s ℓ), and σ(−t) = 1 − σ(t) = −expm1(log σ(t)) = −expm1(ans):
    the gradient comes from the saved output in three passes, without recomputing a sigmoid.
    (expm1 keeps full precision where σ(−t) is tiny.)"""

    def vjp(g):
        if isinstance(g, Box) or isinstance(ans, Box):  # differentiated again: traceable ops
            # s σ(−s ℓ) through the sigmoid primitive, whose own derivative keeps full relative
            # precision; expm1(ans) would differentiate as (expm1(ans) + 1), which cancels.
            sign = 2 * x - 1
            return unbroadcast(sign * sigmoid(-sign * logits) * g, anp.shape(logits))
        grad = np.expm1(ans)  # the usual case: in place, one temporary
        grad *= 1 - 2 * x  # −s
        grad *= g
        return unbroadcast(grad, np.shape(logits))

    return vjp


# x is discrete data, so only the logits get a gradient.
defvjp(bernoulli_log_terms, None, _bernoulli_log_terms_vjp)


@primitive
def sum_last(a):
    """Σ over the last axis. a: (..., d) -> (...). Replaces ``anp.sum(a, axis=-1)``."""
    return np.sum(a, axis=-1)


# The gradient of a sum copies g to every summed entry. A broadcast view does that without
# allocating; autograd's own np.sum VJP materializes it as g + zeros(shape), two full passes.
defvjp(sum_last, lambda ans, a: lambda g: anp.broadcast_to(anp.expand_dims(g, -1), anp.shape(a)))


def bernoulli_logpmf(x, logits):
    """Σ_d log Bern(x_d; σ(ℓ_d)) in two fused kernels. Replaces
    ``distributions.bernoulli_logpmf``. x: (n, d) in {0, 1}, logits: (k, n, d) -> (k, n).
    Unchecked: the model calls it on data it has validated."""
    return sum_last(bernoulli_log_terms(x, logits))


# ---------------------------------------------------------------- scratch memory, reused


class Workspace:
    """Scratch arrays that the kernels reuse from one call to the next instead of allocating.

    A gradient step allocates the same large temporaries every time. glibc hands large freed
    blocks back to the operating system, so fresh ones cost page faults on every step: on the
    reference machine one θ-sized float64 expression (3 temporaries of 3.4 MB) took 27 ms
    instead of 1.4 ms (docs/design.md §7, §19). The process-wide cure (``runtime.tune_malloc``)
    is not the package's to apply; this is the local one.

    ``take(shape, dtype)`` hands out an array that nothing else references: one of its own whose
    reference count shows that only the workspace holds it, else a new one (kept if it fits the
    budget). So an array is reused exactly when every user of it (a saved activation in an
    autograd graph, a gradient the caller kept, a view of either) has let it go. Arrays of more
    than ``largest`` bytes are never kept, and the least recently used free ones make room.
    """

    def __init__(self, budget=256 << 20, largest=64 << 20, smallest=64 << 10):
        self.budget, self.largest, self.smallest = budget, largest, smallest
        self._arrays = {}  # (shape, dtype) -> [arrays], least recently used key first
        self._bytes = 0
        self._lock = threading.Lock()

    def take(self, shape, dtype):
        """An uninitialized array of ``shape`` and ``dtype`` that no one else holds."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if not (self.smallest <= nbytes <= self.largest) or _FREE is None:
            return np.empty(shape, dtype)
        key = (tuple(shape), dtype.str)
        with self._lock:
            arrays = self._arrays.pop(key, [])
            self._arrays[key] = arrays  # most recently used last
            for array in arrays:
                if sys.getrefcount(array) <= _FREE:  # held by this list (and this loop) only
                    return array
            array = np.empty(shape, dtype)
            self._make_room(nbytes)
            if self._bytes + nbytes <= self.budget:
                self._arrays.setdefault(key, []).append(array)  # (room may have emptied it)
                self._bytes += nbytes
            return array

    def _make_room(self, nbytes):
        for key in list(self._arrays):
            if self._bytes + nbytes <= self.budget:
                return
            arrays = self._arrays[key]
            for array in list(arrays):
                if sys.getrefcount(array) <= _FREE + 1:  # the list, `arrays`' copy, the loop
                    arrays.remove(array)
                    self._bytes -= array.nbytes
            if not arrays:
                del self._arrays[key]

    def clear(self):
        """Forget every kept array (arrays still in use stay alive with their users)."""
        with self._lock:
            self._arrays.clear()
            self._bytes = 0

    @property
    def nbytes(self):
        """Bytes the workspace keeps."""
        return self._bytes


def _free_count():
    """sys.getrefcount of an array referenced only by a list, seen from a loop over that list
    (3 in CPython: the list, the loop variable, getrefcount's argument); None where there are no
    reference counts (then nothing is reused)."""
    if not hasattr(sys, "getrefcount"):
        return None
    arrays = [np.empty(1)]
    for array in arrays:
        return sys.getrefcount(array)


_FREE = _free_count()
workspace = Workspace()


# ---------------------------------------------------------------- elementwise work over the cores


_EXECUTOR = []  # [a thread pool, the process id it was made in], made on first use


def _in_parallel(work, jobs, elements):
    """Run ``work(job)`` for every job, the jobs split over up to ``threads.elementwise()`` threads
    when there are at least ``_PER_THREAD`` elements per thread. NumPy releases the GIL inside
    each ufunc, so the threads run at the same time; waiting threads sleep (they do not spin), so
    a busy machine only takes the gain away."""
    workers = min(len(jobs), threads.elementwise(), max(1, elements // _PER_THREAD))
    if workers <= 1 or getattr(_LOCAL, "in_group", False):  # a row group's thread: no nesting
        for job in jobs:
            work(job)
        return
    groups = [jobs[i::workers] for i in range(workers)]

    def run(group):
        for job in group:
            work(job)

    futures = [_executor().submit(run, group) for group in groups[1:]]
    run(groups[0])
    for future in futures:
        future.result()


def _executor():
    """The kernels' thread pool (cores − 1 threads: the calling thread is the other one)."""
    if not _EXECUTOR or _EXECUTOR[1] != os.getpid():  # none yet, or this is a forked child,
        from concurrent.futures import ThreadPoolExecutor  # which has no copy of the threads

        _EXECUTOR[:] = [ThreadPoolExecutor(max_workers=max(2, threads.cores()) - 1), os.getpid()]
    return _EXECUTOR[0]


def row_groups(k, n, elements):
    """How the decoder's k·n rows are split between threads: [(i0, i1, n0, n1)], each group a
    run of whole samples (or, when k = 1, of points), so its rows are contiguous in the
    (k·n, width) arrays. One group (no split) unless each thread gets at least _PER_THREAD of
    the decoder's ``elements``."""
    workers = min(threads.elementwise(), max(1, elements // _PER_GROUP))
    if k == 1:
        workers = min(workers, n)
        edges = [round(n * j / workers) for j in range(workers + 1)]
        return [(0, 1, edges[j], edges[j + 1]) for j in range(workers)]
    workers = min(workers, k)
    edges = [round(k * j / workers) for j in range(workers + 1)]
    return [(edges[j], edges[j + 1], 0, n) for j in range(workers)]


def _rows_of(group, n):
    """A group's (start, stop) in the flattened k·n rows (row i·n + j is sample i, point j)."""
    i0, i1, n0, n1 = group
    if (n0, n1) == (0, n):
        return i0 * n, i1 * n
    return i0 * n + n0, i0 * n + n1  # a run of points of one sample


def decoder_groups(plan, k, n):
    """The row groups (``row_groups``) of a fused call on k samples of n points: split only
    for the Bernoulli likelihood (the Gaussian's σ_x gradient is one sum over every row)."""
    if plan.likelihood != "bernoulli":
        return [(0, k, 0, n)]
    width = sum(W[2][1] for W, _ in plan.decoder)
    return row_groups(k, n, k * n * width)


def encoder_groups(plan, k, n):
    """The groups of points the encoder runs in, in a call on k samples of n points: split only
    when the decoder is (``decoder_groups``: BLAS is then held to one thread, see ``blas_for``)
    and each group has at least _MACS_PER_GROUP multiply-adds (the encoder's cost is its
    products: its first layer reads the whole x, so its outputs alone would undercount it)."""
    if len(decoder_groups(plan, k, n)) == 1:
        return [(0, 1, 0, n)]
    macs = n * sum(W[2][0] * W[2][1] for W, _ in plan.encoder)
    workers = min(threads.elementwise(), max(1, macs // _MACS_PER_GROUP), n)
    edges = [round(n * j / workers) for j in range(workers + 1)]
    return [(0, 1, edges[j], edges[j + 1]) for j in range(workers)]


def blas_for(groups):
    """Context for a whole fused call: BLAS held to one thread when the call runs in row
    ``groups`` (its parallelism is then its own: the groups run their matrix products side by
    side, one core each). Smaller calls keep BLAS's threads: there, two BLAS threads on the
    products beat two groups (measured: W2 and W1 k ≤ 5 were 10–40 % slower in groups).
    OpenBLAS's threads
    keep spinning for a while after each product they ran, and a spinning thread takes a core
    from the call's own threads. Measured on the 2-core machine, a W1 k = 50 step's decoder
    (forward and backward): 76 ms with two BLAS threads, 90 ms with one, 66 ms as two row
    groups of one thread each, 272 ms as two row groups while BLAS kept two threads."""
    if len(groups) > 1:
        return threads.blas_threads(1)
    return contextlib.nullcontext()


def _in_groups(work, groups):
    """Run ``work(index, group)`` for every row group, one thread each (inside ``blas_for``)."""
    if len(groups) == 1:
        work(0, groups[0])
        return

    def run(index):
        _LOCAL.in_group = True
        try:
            work(index, groups[index])
        finally:
            _LOCAL.in_group = False

    futures = [_executor().submit(run, index) for index in range(1, len(groups))]
    run(0)
    for future in futures:
        future.result()


_PER_THREAD = 100_000  # below this many elements per thread, dispatching costs more than it gains
_PER_GROUP = 100_000  # the same for the decoder's row groups (elements of its layers' outputs)
_MACS_PER_GROUP = 4_000_000  # the encoder's groups: multiply-adds per group
_BLOCK = 32_768  # elements per block of fused passes: a few blocks' temporaries stay in cache


def _row_blocks(rows, width):
    """[(start, stop)] covering range(rows) in blocks of about _BLOCK elements."""
    step = max(1, _BLOCK // max(1, width))
    return [(start, min(rows, start + step)) for start in range(0, rows, step)]


def _sample_blocks(k, n, width):
    """[(i0, i1, n0, n1)] covering a (k, n, width) array in blocks of about _BLOCK elements:
    rows of one sample i when n·width is large, else whole samples i0:i1 together."""
    if n * width >= _BLOCK:
        return [(i, i + 1, n0, n1) for i in range(k) for n0, n1 in _row_blocks(n, width)]
    return [(i0, i1, 0, n) for i0, i1 in _row_blocks(k, n * width)]


# ---------------------------------------------------------------- the whole log-weights, fused


class NetworkPlan:
    """Where a VAE's networks live in θ, for ``log_weights``.

    encoder, decoder: one ((W_start, W_stop, W_shape), (b_start, b_stop, b_shape)) pair per layer;
    activation: the hidden layers' ("tanh" or "relu"); likelihood: "bernoulli" or "gaussian",
    with ``log_std`` the block of the Gaussian's log σ_x (else None); z_dim; size: θ's length.
    The blocks must tile θ, so the fused gradient writes every entry of θ's gradient and never
    has to zero it first."""

    def __init__(self, encoder, decoder, activation, likelihood, log_std, z_dim, size):
        self.encoder, self.decoder = tuple(encoder), tuple(decoder)
        self.activation, self.likelihood = activation, likelihood
        self.log_std, self.z_dim, self.size = log_std, z_dim, size
        blocks = [block for layer in self.encoder + self.decoder for block in layer]
        spans = sorted((start, stop) for start, stop, _ in blocks + [log_std] * bool(log_std))
        covered = 0
        for start, stop in spans:
            if start != covered:
                raise ValueError(f"plan: expected blocks that tile θ, got a gap at {covered}")
            covered = stop
        if covered != size:
            raise ValueError(f"plan: expected blocks that tile θ's {size} entries, got {covered}")


def _view(theta, block):
    start, stop, shape = block
    return theta[start:stop].reshape(shape)


_LOCAL = threading.local()  # per thread: the forward's saved arrays, and block scratch


def _scratch(shape, dtype, count):
    """``count`` arrays of ``shape`` for one block's temporaries, from this thread's own scratch
    buffer (a block is ~_BLOCK elements: it stays in cache and is never allocated again)."""
    size = math.prod(shape)
    buffers = getattr(_LOCAL, "buffers", None)
    if buffers is None:
        buffers = _LOCAL.buffers = {}
    buffer = buffers.get(np.dtype(dtype).str)
    if buffer is None or buffer.size < count * size:
        buffer = buffers[np.dtype(dtype).str] = np.empty(max(count * size, 2 * _BLOCK), dtype)
    return [buffer[j * size : (j + 1) * size].reshape(shape) for j in range(count)]


def log_weights(theta, x, eps, plan, stop_q=False, fallback=None):
    """log w = log p(x|z) + log p(z) − log q(z|x), z = μ + σ ⊙ ε, for a VAE, in one primitive.

    Replaces the model's chain encode → reparameterize → decode → likelihood + prior − log q
    (some 35 autograd operations, each with its bookkeeping). The forward pass runs the networks
    in NumPy, with the same operations as the layered kernels (the same numbers, bit for bit) and
    keeps what the backward pass needs; the backward pass is derived by hand and writes θ's
    whole gradient into one array. theta: (P,); x: (n, x_dim); eps: (k, n, z_dim); plan: a
    ``NetworkPlan``; stop_q: log q with (μ, σ) held constant (STL, DReG);
    fallback(θ, x, ε, stop_q): the same log-weights through the layered kernels, used for all
    that this kernel does not do itself: derivatives in x or ε, derivatives of the derivative
    (second order and beyond), and inputs whose log-weights are not all finite (so overflow
    behaves exactly as on the layered path). -> (k, n).

    The derivatives, with g = ∂L/∂log w (k, n):

        ∂/∂logits   g s σ(−s ℓ)  (Bernoulli, s = 2x − 1)    or    g u_x / σ_x  (Gaussian)
        ∂/∂z        decoder backward − g z  (+ g ε/σ with stop_q: log q's slope in z alone)
        ∂/∂μ        Σ_k ∂/∂z
        ∂/∂log σ    Σ_k (∂/∂z) σ ε  (+ Σ_k g without stop_q)

    Without stop_q, log q(z|x) = Σ_d [−½ log 2π − log σ_d − ½ ε_d²] because (z − μ)/σ = ε: its
    total derivative in μ is 0 and in log σ is −1, whatever z does.
    """
    if derivative_levels(theta, x, eps) > 1:
        # Inside a derivative of a derivative (a Hessian-vector product, say): the layered
        # path, which autograd differentiates at every level. stop_q holds q constant for the
        # innermost derivative only, and a primitive cannot tell its outer levels from its inner
        # one. (The derivatives are counted from the inputs' boxes: autograd's global trace
        # counter stays raised after an exception escapes a derivative.)
        return fallback(theta, x, eps, stop_q)
    keep = any(isinstance(value, Box) for value in (theta, x, eps))
    return _log_weights(theta, x, eps, plan, stop_q, fallback, keep)


@primitive
def _log_weights(theta, x, eps, plan, stop_q, fallback, keep):
    """``log_weights``' primitive; keep: it is being differentiated (save for the VJP)."""
    dtype = theta.dtype
    if x.dtype != dtype or eps.dtype != dtype or dtype not in (np.float32, np.float64):
        return _fall_back(theta, x, eps, stop_q, fallback, keep)
    with np.errstate(all="ignore"), threads.kernel_call():
        with blas_for(decoder_groups(plan, *eps.shape[:2])):
            out, saved = _forward(theta, x, eps, plan, keep)
    if not np.isfinite(out).all():  # an overflow on the way: the layered path's exact answer
        return _fall_back(theta, x, eps, stop_q, fallback, keep)
    if keep:
        _LOCAL.saved = (id(out), saved)
    return out


def _fall_back(theta, x, eps, stop_q, fallback, keep):
    from .checks import inside

    with inside():
        out = fallback(theta, x, eps, stop_q)
    if keep:
        _LOCAL.saved = (id(out), None)
    return out


def _activate(a, activation):
    if activation == "tanh":
        np.tanh(a, out=a)
    elif activation == "relu":
        np.maximum(a, 0, out=a)


def _forward(theta, x, eps, plan, keep):
    """The log-weights, and (if ``keep``) what the backward pass needs."""
    take = workspace.take if keep else np.empty
    dtype = theta.dtype
    k, n, d = eps.shape
    rows = k * n
    # the encoder, on the n points (by groups of points when n is large)
    encoder = [(_view(theta, W), _view(theta, b)) for W, b in plan.encoder]
    encoder_in = [x] + [take((n, W.shape[1]), dtype) for W, _ in encoder[:-1]]
    h = np.empty((n, encoder[-1][0].shape[1]), dtype)
    _in_groups(
        lambda index, group: _layers_forward(
            encoder, encoder_in, h, _rows_of(group, n), plan.activation
        ),
        encoder_groups(plan, k, n),
    )
    mean, log_std = h[:, :d], h[:, d:]
    sigma = np.exp(log_std)
    z = take((k, n, d), dtype)
    np.multiply(sigma, eps, out=z)
    z += mean  # z = μ + σ ε
    # the decoder, on the k·n samples: each layer's output is a (rows, width) array, filled by
    # row groups (one thread each, see _in_groups) or at once
    weights = [(_view(theta, W), _view(theta, b)) for W, b in plan.decoder]
    decoder_in = [z.reshape(rows, d)] + [take((rows, W.shape[1]), dtype) for W, _ in weights[:-1]]
    a = take((rows, weights[-1][0].shape[1]), dtype)
    outputs = a.reshape(k, n, -1)
    bernoulli = plan.likelihood == "bernoulli"
    if bernoulli:
        sign = 2 * x - 1  # (n, x_dim)
        log_lik = np.empty((k, n), dtype)
        e_all = take(outputs.shape, dtype) if keep else None
        negative_all = take(outputs.shape, np.bool_) if keep else None
        lik_saved = (sign, e_all, negative_all)
    groups = decoder_groups(plan, k, n)

    def forward(index, group):
        _layers_forward(weights, decoder_in, a, _rows_of(group, n), plan.activation)
        if bernoulli:
            i0, i1, n0, n1 = group
            part = (slice(i0, i1), slice(n0, n1))
            _bernoulli_into(
                sign[n0:n1],
                outputs[part],
                log_lik[part],
                e_all[part] if keep else None,
                negative_all[part] if keep else None,
            )

    _in_groups(forward, groups)
    if not bernoulli:
        log_lik, lik_saved = _gaussian_forward(theta, x, outputs, plan)
    # log p(z) and log q(z|x) exactly as distributions.std_normal_logpdf and normal_logpdf
    # compute them (same operations, so the same bits; they are (k, n, z_dim), small)
    log_2pi = math.log(2 * math.pi)
    log_prior = np.sum(-0.5 * log_2pi - 0.5 * z * z, axis=-1)
    residual = z - mean
    u = residual * np.exp(-log_std * (residual != 0))
    log_q = np.sum(-0.5 * log_2pi - log_std - 0.5 * u * u, axis=-1)
    out = log_lik + log_prior
    out -= log_q
    if not keep:
        return out, None
    saved = {
        "encoder_in": encoder_in,
        "sigma": sigma,
        "z": z,
        "decoder_in": decoder_in,
        "outputs": a,
        "likelihood": lik_saved,
    }
    return out, saved


def _bias_activate(out, b, activation):
    """out ← a(out + b) in place, over blocks of rows split between threads."""
    rows, width = out.shape

    def work(block):
        part = out[block[0] : block[1]]
        part += b
        _activate(part, activation)

    _in_parallel(work, _row_blocks(rows, width), out.size)


def _bernoulli_into(sign, logits, out, e_all, negative_all):
    """out ← Σ_d log σ(s_d ℓ_d) (k, n), s = 2x − 1 (sign: (n, x_dim)), with the operations of
    ``bernoulli_log_terms`` (the same bits), block by block: log σ(t) = min(t, 0) − log1p(e),
    e = exp(−|t|). With e_all and negative_all (each like logits; None to skip), saves e and
    where t < 0, so that the backward pass needs no transcendental function:
    σ(−t) = (1 if t < 0 else e) / (1 + e)."""
    k, n, width = logits.shape
    keep = e_all is not None
    blocks = _sample_blocks(k, n, width)

    def work(block):
        i0, i1, n0, n1 = block
        t, e, softplus_part = _scratch((i1 - i0, n1 - n0, width), logits.dtype, 3)
        np.multiply(sign[n0:n1], logits[i0:i1, n0:n1], out=t)
        if keep:
            e = e_all[i0:i1, n0:n1]
            np.less(t, 0, out=negative_all[i0:i1, n0:n1])
        np.abs(t, out=e)
        np.negative(e, out=e)
        np.exp(e, out=e)
        log1p_unit(e, softplus_part)  # log1p(e^{−|t|})
        np.minimum(t, 0, out=t)
        t -= softplus_part
        np.sum(t, axis=-1, out=out[i0:i1, n0:n1])

    _in_parallel(work, blocks, logits.size)


def _bernoulli_backward(g, saved, grad_logits):
    """grad_logits ← g s σ(−t) (k, n, x_dim), with σ(−t) = (1 if t < 0 else e)/(1 + e).

    The numerator is max(e, [t < 0]): e ≤ 1, so the maximum is 1 where t < 0 and e (exactly)
    elsewhere. It replaces a multiply with a ``where=`` mask, which NumPy runs element by element
    through its masked loop: 7.8 ms against 0.4 ms per 784k float32 entries (W1 k = 50), measured
    on the reference machine."""
    sign, e_all, negative_all = saved
    k, n, width = e_all.shape
    blocks = _sample_blocks(k, n, width)

    def work(block):
        i0, i1, n0, n1 = block
        e, out = e_all[i0:i1, n0:n1], grad_logits[i0:i1, n0:n1]
        (one_plus_e,) = _scratch(e.shape, e.dtype, 1)
        np.maximum(e, negative_all[i0:i1, n0:n1], out=out)  # 1 where t < 0, else e
        np.add(e, 1, out=one_plus_e)
        np.divide(out, one_plus_e, out=out)  # σ(−t)
        out *= sign[n0:n1]  # s σ(−t): s = ±1, exact
        out *= g[i0:i1, n0:n1, None]

    _in_parallel(work, blocks, e_all.size)


def _gaussian_forward(theta, x, mean, plan):
    """Σ_d log N(x_d; mean_d, σ_x,d²) as ``distributions.normal_logpdf`` computes it (the
    same operations; its overflow guards are the fallback's business: a non-finite result
    goes there). Saves u = (x − mean)/σ_x and 1/σ_x."""
    log_std = _view(theta, plan.log_std)
    residual = x - mean
    inverse_std = np.exp(-log_std * (residual != 0))
    u = residual * inverse_std
    out = np.sum(-0.5 * math.log(2 * math.pi) - log_std - 0.5 * u * u, axis=-1)
    return out, (u, inverse_std)


def _log_weights_vjp(argnums, ans, args, kwargs):
    theta, x, eps, plan, stop_q, fallback, keep = args
    record = getattr(_LOCAL, "saved", None)
    saved = record[1] if record is not None and record[0] == id(ans) else None
    _LOCAL.saved = None  # the graph's closure holds it from here on
    traced = any(isinstance(value, Box) for value in (ans, theta, x, eps))
    if traced or saved is None or tuple(argnums) != (0,):
        return _reference_vjp(args[:3], argnums, stop_q, fallback)

    def vjp(g):
        if isinstance(g, Box):  # the cotangent is being differentiated: the traceable path
            return _reference_vjp(args[:3], argnums, stop_q, fallback)(g)
        with np.errstate(all="ignore"), threads.kernel_call():
            with blas_for(decoder_groups(plan, *eps.shape[:2])):
                return (_backward(g, theta, x, eps, plan, stop_q, saved),)

    return vjp


def _reference_vjp(values, argnums, stop_q, fallback):
    """The VJP of the layered path (``fallback``), by autograd: traceable, so derivatives of
    derivatives follow the layered kernels, each tested to second order."""
    from autograd.core import make_vjp

    from .checks import inside

    def function(chosen):
        arguments = list(values)
        for argnum, value in zip(argnums, chosen, strict=True):
            arguments[argnum] = value
        return fallback(*arguments, stop_q)

    def vjp(g):
        with inside():
            backward, _ = make_vjp(function, tuple(values[argnum] for argnum in argnums))
            return backward(g)

    return vjp


defvjp_argnums(_log_weights, _log_weights_vjp)


def _backward(g, theta, x, eps, plan, stop_q, saved):
    """θ's whole gradient (P,), written block by block (the blocks tile θ)."""
    dtype = theta.dtype
    g = np.asarray(g, dtype)
    k, n, d = eps.shape
    rows = k * n
    grad = workspace.take((plan.size,), dtype)
    last = saved["outputs"]  # (rows, x_dim): the outputs are not needed again; their gradient
    outputs = last.reshape(k, n, -1)  # takes their place
    bernoulli = plan.likelihood == "bernoulli"
    if not bernoulli:
        # ∂/∂mean = g u / σ_x;  ∂/∂log σ_x = Σ_{k,n} g (u² − 1)
        u, inverse_std = saved["likelihood"]
        log_std_grad = _view(grad, plan.log_std)
        np.einsum("kn,knd,knd->d", g, u, u, out=log_std_grad)
        log_std_grad -= g.sum()
        np.multiply(u, inverse_std, out=outputs)
        outputs *= g[:, :, None]
    # the decoder, last layer first: W ← aᵀ δ, b ← Σ_rows δ, δ ← (δ Wᵀ) ⊙ a'(·), by the row
    # groups of the forward pass; each group after the first sums its rows' W and b gradients
    # in its own arrays, added to the first's in a fixed order at the end
    weights = [(_view(theta, W), _view(theta, b)) for W, b in plan.decoder]
    deltas = [workspace.take((rows, W.shape[0]), dtype) for W, _ in weights]  # ∂/∂ layer inputs
    groups = decoder_groups(plan, k, n)
    sums = _GroupSums(grad, plan.decoder, len(groups))

    def backward(index, group):
        start, stop = _rows_of(group, n)
        if bernoulli:
            i0, i1, n0, n1 = group
            part = (slice(i0, i1), slice(n0, n1))
            sign, e_all, negative_all = saved["likelihood"]
            lik = (sign[n0:n1], e_all[part], negative_all[part])
            _bernoulli_backward(g[part], lik, outputs[part])
        _layers_backward(
            weights,
            saved["decoder_in"],
            last[start:stop],
            sums.of(index),
            deltas,
            (start, stop),
            plan.activation,
        )

    _in_groups(backward, groups)
    sums.add_up()
    delta = deltas[0]
    # z: log p(z) adds −g z; with stop_q, −log q(z; μ, σ held) adds g (z − μ)/σ² = g ε/σ
    z, sigma, g3 = saved["z"], saved["sigma"], g[:, :, None]
    grad_z = delta.reshape(k, n, d)
    grad_z -= z * g3
    if stop_q:
        grad_z += eps / sigma * g3
    grad_mean = grad_z.sum(axis=0)
    grad_z *= eps
    grad_log_std = grad_z.sum(axis=0)
    grad_log_std *= sigma
    if not stop_q:  # −log q = Σ_d log σ_d + …
        grad_log_std += g.sum(axis=0)[:, None]
    delta = np.concatenate([grad_mean, grad_log_std], axis=1)  # (n, 2 z_dim)
    encoder = [(_view(theta, W), _view(theta, b)) for W, b in plan.encoder]
    # ∂/∂ the inputs of layers 1, 2, … (not of layer 0: that is x, held constant here)
    encoder_deltas = [None] + [np.empty((n, W.shape[0]), dtype) for W, _ in encoder[1:]]
    groups = encoder_groups(plan, k, n)
    sums = _GroupSums(grad, plan.encoder, len(groups))

    def encoder_backward(index, group):
        rows_ = _rows_of(group, n)
        _layers_backward(
            encoder,
            saved["encoder_in"],
            delta[rows_[0] : rows_[1]],
            sums.of(index),
            encoder_deltas,
            rows_,
            plan.activation,
        )

    _in_groups(encoder_backward, groups)
    sums.add_up()
    return grad


def _layers_forward(layers, inputs, last, rows, activation):
    """Dense layers h ← a(h W + b) (no activation on the last) for the rows (start, stop):
    layer i reads inputs[i] and writes inputs[i + 1], the last layer writes ``last``."""
    start, stop = rows
    for i, (W, b) in enumerate(layers):
        out = (inputs[i + 1] if i + 1 < len(layers) else last)[start:stop]
        np.matmul(inputs[i][start:stop], W, out=out)
        if i < len(layers) - 1:
            _bias_activate(out, b, activation)
        else:
            out += b


def _layers_backward(layers, inputs, delta, sums, deltas, rows, activation):
    """Back through ``_layers_forward``'s layers for the rows (start, stop), last layer first,
    from delta = ∂/∂(last output) of those rows: W ← aᵀ δ, b ← Σ_rows δ into ``sums`` (one
    (W, b) pair per layer), then δ ← (δ Wᵀ) ⊙ a'(·) into deltas[i] (skipped where deltas[i] is
    None: the first layer's input needs no gradient)."""
    start, stop = rows
    for i in range(len(layers) - 1, -1, -1):
        a, W = inputs[i][start:stop], layers[i][0]
        W_grad, b_grad = sums[i]
        np.matmul(a.T, delta, out=W_grad)
        np.sum(delta, axis=0, out=b_grad)
        if deltas[i] is None:
            break
        previous = deltas[i][start:stop]
        np.matmul(delta, W.T, out=previous)
        if i > 0:
            _activation_backward(previous, a, activation)
        delta = previous


class _GroupSums:
    """Where each row group sums its rows' W and b gradients: the first group into θ's gradient
    itself, each later one into arrays of its own, added to the first's in a fixed order by
    ``add_up`` (so a given thread count always gives the same bits)."""

    def __init__(self, grad, blocks, groups):
        self.targets = [(_view(grad, W), _view(grad, b)) for W, b in blocks]
        self.partials = [
            [(np.empty_like(W), np.empty_like(b)) for W, b in self.targets]
            for _ in range(groups - 1)
        ]

    def of(self, index):
        return self.targets if index == 0 else self.partials[index - 1]

    def add_up(self):
        for partial in self.partials:
            for (W_grad, b_grad), (W_part, b_part) in zip(self.targets, partial, strict=True):
                W_grad += W_part
                b_grad += b_part


def _activation_backward(delta, h, activation):
    """delta ← delta ⊙ a'(pre), from the layer's output h: tanh' = 1 − h², relu' = [h > 0]."""
    if activation == "relu":
        np.multiply(delta, h > 0, out=delta)
        return
    rows, width = delta.shape

    def work(block):
        part, out = h[block[0] : block[1]], delta[block[0] : block[1]]
        (slope,) = _scratch(part.shape, delta.dtype, 1)
        np.multiply(part, part, out=slope)
        np.subtract(1, slope, out=slope)
        out *= slope

    _in_parallel(work, _row_blocks(rows, width), delta.size)


# ---------------------------------------------------------------- Adam's update, fused


def adam_update(params, grad, m, v, beta1, beta2, eps, lr, t):
    """One Adam ascent step with the moments m, v updated in place; returns the new params (a new
    array). The same operations in the same order as ``optim.Adam``'s reference form, so the
    same bits:

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g g,
        params + lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)

    but block by block (a block's ~thirteen passes run while it is in cache, instead of thirteen
    passes over θ-sized arrays, each through memory), the blocks split between threads, and with
    no θ-sized temporary. params, grad, m, v: one shape and dtype, C-contiguous; eps > 0."""
    c1, c2 = 1 - beta1**t, 1 - beta2**t
    new = np.empty_like(params)
    flat = [a.reshape(-1) for a in (params, grad, m, v, new)]
    size = flat[0].size
    step = 2 * _BLOCK  # measured: larger blocks pay less per call, and 5 arrays still fit in L2
    blocks = [(start, min(size, start + step)) for start in range(0, size, step)]

    def work(block):
        p, g, m_, v_, out = (a[block[0] : block[1]] for a in flat)
        scratch, denominator = _scratch(p.shape, p.dtype, 2)
        np.multiply(m_, beta1, out=m_)
        np.multiply(g, 1 - beta1, out=scratch)
        np.add(m_, scratch, out=m_)
        np.multiply(g, 1 - beta2, out=scratch)
        np.multiply(scratch, g, out=scratch)
        np.multiply(v_, beta2, out=v_)
        np.add(v_, scratch, out=v_)
        np.divide(v_, c2, out=denominator)
        np.sqrt(denominator, out=denominator)
        np.add(denominator, eps, out=denominator)
        np.divide(m_, c1, out=scratch)
        np.divide(scratch, denominator, out=scratch)
        np.multiply(scratch, lr, out=scratch)
        np.add(p, scratch, out=out)

    _in_parallel(work, blocks, 4 * size)
    return new
