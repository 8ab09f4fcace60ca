"""Triton kernels of the fused discriminator step (DESIGN.md §3.1); host code and the op
registration are in disc_step_triton.py.

Why the backward is cheap: D is row-wise (one logit per kernel) and its MLP
backward is linear in dlogit, so one backward pass with dlogit = 1 gives
``J_i[b] = d logit_b / d a_i[b]`` for every layer; the D head (per-row weight
``gd_b = L_D'(l_b)/B``) and the G head (``gg_b = L_G'(l_b)/B``) are per-row
scalings of the same J. Only batch norm couples rows, through its batch sums.

Launches: [batch norm] stats -> main (fwd + bwd, per-program partials) ->
torch.sum of partials -> [batch norm with G head] dx. Two main kernels share that
contract: ``_disc_main_kernel`` keeps whole-width tiles in registers (padded widths
<= 128); ``_disc_chunked_kernel`` (last in this file) streams activations through a
per-program scratch for wider layers.
"""
import triton
import triton.language as tl


@triton.jit
def _leaky(a, slope):
    return tl.where(a > 0, a, a * slope)


@triton.jit
def _load_w(w_ptr, N, K, NP: tl.constexpr, KP: tl.constexpr):
    """nn.Linear weight ``[N, K]`` as a zero-padded ``[NP, KP]`` tile."""
    n = tl.arange(0, NP)
    k = tl.arange(0, KP)
    m = (n[:, None] < N) & (k[None, :] < K)
    return tl.load(w_ptr + n[:, None] * K + k[None, :], mask=m, other=0.0)


@triton.jit
def _load_wt(w_ptr, N, K, NP: tl.constexpr, KP: tl.constexpr):
    """The same weight transposed, ``[KP, NP]``: a separate load, so the forward and
    backward copies of W are not one value kept live (in shared memory) across the tile."""
    n = tl.arange(0, NP)
    k = tl.arange(0, KP)
    m = (k[:, None] < K) & (n[None, :] < N)
    return tl.load(w_ptr + n[None, :] * K + k[:, None], mask=m, other=0.0)


@triton.jit
def _load_v(p, N, NP: tl.constexpr):
    n = tl.arange(0, NP)
    return tl.load(p + n, mask=n < N, other=0.0)


@triton.jit
def _store_w(p, acc, N, K, NP: tl.constexpr, KP: tl.constexpr):
    n = tl.arange(0, NP)
    k = tl.arange(0, KP)
    tl.store(p + n[:, None] * K + k[None, :], acc, mask=(n[:, None] < N) & (k[None, :] < K))


@triton.jit
def _store_v(p, v, N, NP: tl.constexpr):
    n = tl.arange(0, NP)
    tl.store(p + n, v, mask=n < N)


@triton.jit
def _loss(l, t, HINGE: tl.constexpr, GEN: tl.constexpr):
    """Per-row loss and dloss/dlogit. Hinge at the margin takes relu'(0) = 0 like torch."""
    if HINGE:
        s = 1.0 - 2.0 * t  # t=1 -> -1, t=0 -> +1
        if GEN:
            val = s * l
            grad = s + 0.0 * l
        else:
            m = 1.0 + s * l
            val = tl.maximum(m, 0.0)
            grad = tl.where(m > 0, s, 0.0)
    else:
        # softplus(l) - t*l = (max(l, 0) - t*l) + log1p(e), e = exp(-|l|), summed in that
        # order so a confident D (l >> 0 at t = 1) keeps its tiny loss instead of l - l.
        # log1p(e) = log(u) * e / (u - 1), u = 1 + e (Goldberg): exact where log(1 + e) loses
        # e in fp32. One exp serves the grad too: sigmoid(|l|) = 1/u, sigmoid(-|l|) = e/u;
        # at t = 1 the grad is -sigmoid(-l), not sigmoid(l) - 1 (cancellation).
        e = tl.exp(-tl.abs(l))
        u = 1.0 + e
        r = 1.0 / u
        d = u - 1.0
        lp = tl.where(d == 0.0, e, tl.log(u) * (e / tl.where(d == 0.0, 1.0, d)))
        val = (tl.maximum(l, 0.0) - t * l) + lp
        pos = l >= 0
        sig = tl.where(pos, r, e * r)          # sigmoid(l)
        sig_neg = tl.where(pos, e * r, r)      # sigmoid(-l)
        grad = tl.where(t == 1.0, -sig_neg, sig - t)
    return val, grad


@triton.jit
def _load_rows(x_ptr, t, B, cols, cm, D: tl.constexpr, BLOCK_B: tl.constexpr):
    """Row tile ``t`` of the ``[B, D]`` input: rows, row mask, element mask, int64
    offsets and the tile (masked rows and padding columns read 0)."""
    rows = t * BLOCK_B + tl.arange(0, BLOCK_B)
    rm = rows < B
    msk = rm[:, None] & cm[None, :]
    off = rows.to(tl.int64)[:, None] * D + cols[None, :]
    return rows, rm, msk, off, tl.load(x_ptr + off, mask=msk, other=0.0)


@triton.jit
def _bn_stats_kernel(x_ptr, part_ptr, B, n_tiles, D: tl.constexpr, DP: tl.constexpr,
                     BLOCK_B: tl.constexpr):
    """Per-program (count, mean, M2) over its row tiles, merged with Chan's formula
    (no E[x^2]-mu^2 cancellation). part: ``[P, 3, DP]``."""
    pid = tl.program_id(0)
    P = tl.num_programs(0)
    cols = tl.arange(0, DP)
    cm = cols < D
    n = tl.zeros([DP], tl.float32)
    mean = tl.zeros([DP], tl.float32)
    m2 = tl.zeros([DP], tl.float32)
    for t in range(pid, n_tiles, P):
        rows, rm, msk, xoff, x = _load_rows(x_ptr, t, B, cols, cm, D, BLOCK_B)
        nt = tl.sum(rm.to(tl.float32), 0)
        mt = tl.sum(x, 0) / nt
        d = tl.where(msk, x - mt[None, :], 0.0)
        delta = mt - mean
        nn = n + nt
        mean = mean + delta * (nt / nn)
        m2 = m2 + tl.sum(d * d, 0) + delta * delta * (n * nt / nn)
        n = nn
    base = part_ptr + pid * 3 * DP + cols
    tl.store(base, n)
    tl.store(base + DP, mean)
    tl.store(base + 2 * DP, m2)


@triton.jit
def _bn_finalize(stat_ptr, n_stat, B, eps, DP: tl.constexpr, SB: tl.constexpr):
    """Merge the stats partials into (mu, rstd); deterministic, same in every program."""
    cols = tl.arange(0, DP)
    s = tl.zeros([DP], tl.float32)
    for i in range(0, n_stat, SB):
        r = i + tl.arange(0, SB)
        p = stat_ptr + r[:, None] * (3 * DP) + cols[None, :]
        m = (r < n_stat)[:, None]
        s += tl.sum(tl.load(p, mask=m, other=0.0) * tl.load(p + DP, mask=m, other=0.0), 0)
    mu = s / B
    m2 = tl.zeros([DP], tl.float32)
    for i in range(0, n_stat, SB):
        r = i + tl.arange(0, SB)
        p = stat_ptr + r[:, None] * (3 * DP) + cols[None, :]
        m = (r < n_stat)[:, None]
        d = tl.load(p + DP, mask=m, other=0.0) - mu[None, :]
        m2 += tl.sum(tl.load(p + 2 * DP, mask=m, other=0.0)
                     + tl.load(p, mask=m, other=0.0) * d * d, 0)
    return mu, 1.0 / tl.sqrt(m2 / B + eps)


@triton.jit
def _norm_prologue(stat_ptr, n_stat, musd_ptr, gam_ptr, bet_ptr, B, eps,
                   D: tl.constexpr, DP: tl.constexpr, STAT_BLOCK: tl.constexpr,
                   BATCH_NORM: tl.constexpr):
    """Batch norm: (mu, rstd) from the stats partials (program 0 saves them for the dx
    pass), gamma, beta. Kernel norm uses none of them: zeros, dropped by the compiler."""
    if BATCH_NORM:
        mu, rstd = _bn_finalize(stat_ptr, n_stat, B, eps, DP, STAT_BLOCK)
        if tl.program_id(0) == 0:
            tl.store(musd_ptr + tl.arange(0, DP), mu)
            tl.store(musd_ptr + DP + tl.arange(0, DP), rstd)
        gam = _load_v(gam_ptr, D, DP)
        bet = _load_v(bet_ptr, D, DP)
    else:
        mu = tl.zeros([DP], tl.float32)
        rstd, gam, bet = mu, mu, mu
    return mu, rstd, gam, bet


@triton.jit
def _normalize(x, msk, mu, rstd, gam, bet, eps, D: tl.constexpr, BLOCK_B: tl.constexpr,
               BATCH_NORM: tl.constexpr):
    """A row tile -> (xhat, z = D's input, rs = per-row 1/std of kernel norm; unused
    under batch norm)."""
    if BATCH_NORM:
        xhat = (x - mu[None, :]) * rstd[None, :]
        z = xhat * gam[None, :] + bet[None, :]
        rs = tl.zeros([BLOCK_B], tl.float32)
    else:
        xc = tl.where(msk, x - (tl.sum(x, 1) / D)[:, None], 0.0)
        rs = 1.0 / tl.sqrt(tl.sum(xc * xc, 1) / D + eps)
        xhat = xc * rs[:, None]
        z = xhat
    return xhat, z, rs


@triton.jit
def _heads(logit, rm, d_t, g_t, inv_b, acc_ld, acc_lg, HINGE: tl.constexpr, HAS_G: tl.constexpr):
    """Both losses of a tile: per-row weights of the D head (gd) and G head (gg; zeros
    without it), 1/B folded in, and the running loss sums."""
    ld, gd = _loss(logit, d_t, HINGE, False)
    acc_ld += tl.where(rm, ld, 0.0) * inv_b
    gd = tl.where(rm, gd, 0.0) * inv_b
    if HAS_G:
        lg, gg = _loss(logit, g_t, HINGE, True)
        acc_lg += tl.where(rm, lg, 0.0) * inv_b
        gg = tl.where(rm, gg, 0.0) * inv_b
    else:
        gg = gd * 0.0
    return gd, gg, acc_ld, acc_lg


@triton.jit
def _norm_backward(jz, gd, gg, xhat, gam, rs, msk, u_ptr, xoff, acc_gam, acc_bet, acc_s1, acc_s2,
                   D: tl.constexpr, BATCH_NORM: tl.constexpr, HAS_G: tl.constexpr):
    """From ``jz = dlogit/dz``: batch-norm parameter grads and the batch sums of its
    backward (accumulated), and the G head's grad into u (final dx for kernel norm,
    dxhat for batch norm, which the dx pass finishes)."""
    if BATCH_NORM:
        jzd = jz * gd[:, None]
        acc_gam += tl.sum(jzd * xhat, 0)
        acc_bet += tl.sum(jzd, 0)
        if HAS_G:
            jzg = jz * gg[:, None]
            acc_s1 += tl.sum(jzg, 0)
            acc_s2 += tl.sum(jzg * xhat, 0)
            tl.store(u_ptr + xoff, jzg * gam[None, :], mask=msk)
    elif HAS_G:
        dxh = tl.where(msk, jz * gg[:, None], 0.0)
        m1 = tl.sum(dxh, 1) / D
        m2 = tl.sum(dxh * xhat, 1) / D
        dx = rs[:, None] * (dxh - m1[:, None] - xhat * m2[:, None])
        tl.store(u_ptr + xoff, dx, mask=msk)
    return acc_gam, acc_bet, acc_s1, acc_s2


@triton.jit
def _store_bn(out, acc_gam, acc_bet, acc_s1, acc_s2, D: tl.constexpr, DP: tl.constexpr,
              OFF_S: tl.constexpr, BATCH_NORM: tl.constexpr):
    """Partials of the batch-norm params (first in the flat layout) and backward sums."""
    if BATCH_NORM:
        _store_v(out, acc_gam, D, DP)
        _store_v(out + D, acc_bet, D, DP)
        _store_v(out + OFF_S, acc_s1, D, DP)
        _store_v(out + OFF_S + D, acc_s2, D, DP)


@triton.jit
def _store_tail(out, acc_bo, acc_ld, acc_lg, HL: tl.constexpr, OFF_WO: tl.constexpr,
                OFF_LOSS: tl.constexpr):
    """Partials of the output bias and of both losses."""
    tl.store(out + OFF_WO + HL, tl.sum(acc_bo, 0))
    tl.store(out + OFF_LOSS, tl.sum(acc_ld, 0))
    tl.store(out + OFF_LOSS + 1, tl.sum(acc_lg, 0))


@triton.jit
def _disc_main_kernel(
        x_ptr, gam_ptr, bet_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, wo_ptr, bo_ptr,
        stat_ptr, n_stat, musd_ptr, logit_ptr, u_ptr, part_ptr,
        B, n_tiles, d_t, g_t, slope, eps,
        D: tl.constexpr, DP: tl.constexpr, H1: tl.constexpr, H1P: tl.constexpr,
        H2: tl.constexpr, H2P: tl.constexpr, H3: tl.constexpr, H3P: tl.constexpr,
        HL: tl.constexpr, HLP: tl.constexpr,
        L: tl.constexpr, BATCH_NORM: tl.constexpr, HINGE: tl.constexpr, HAS_G: tl.constexpr,
        BLOCK_B: tl.constexpr, STAT_BLOCK: tl.constexpr, PREC: tl.constexpr,
        OFF_W1: tl.constexpr, OFF_W2: tl.constexpr, OFF_W3: tl.constexpr, OFF_WO: tl.constexpr,
        OFF_LOSS: tl.constexpr, OFF_S: tl.constexpr, TOTAL: tl.constexpr):
    """Forward + one dlogit=1 backward per row tile (persistent loop over tiles).

    Writes logits, per-program partials of every D grad / loss / BN-backward sum
    into ``part[pid, :TOTAL]`` (flat, in ``disc.parameters()`` order), and the
    G-head grad: final dx for kernel norm, dxhat for batch norm (fixed by the dx pass).
    """
    pid = tl.program_id(0)
    P = tl.num_programs(0)
    inv_b = 1.0 / B
    cols = tl.arange(0, DP)
    cm = cols < D
    mu, rstd, gam, bet = _norm_prologue(stat_ptr, n_stat, musd_ptr, gam_ptr, bet_ptr, B, eps,
                                        D, DP, STAT_BLOCK, BATCH_NORM)
    zd = tl.zeros([DP], tl.float32)
    acc_gam, acc_bet, acc_s1, acc_s2 = zd, zd, zd, zd
    acc_w1 = tl.zeros([H1P, DP], tl.float32)
    acc_b1 = tl.zeros([H1P], tl.float32)
    if L >= 2:
        acc_w2 = tl.zeros([H2P, H1P], tl.float32)
        acc_b2 = tl.zeros([H2P], tl.float32)
    if L >= 3:
        acc_w3 = tl.zeros([H3P, H2P], tl.float32)
        acc_b3 = tl.zeros([H3P], tl.float32)
    acc_wo = tl.zeros([HLP], tl.float32)
    acc_bo = tl.zeros([BLOCK_B], tl.float32)
    acc_ld = tl.zeros([BLOCK_B], tl.float32)
    acc_lg = tl.zeros([BLOCK_B], tl.float32)

    for t in range(pid, n_tiles, P):
        rows, rm, msk, xoff, x = _load_rows(x_ptr, t, B, cols, cm, D, BLOCK_B)
        xhat, z, rs = _normalize(x, msk, mu, rstd, gam, bet, eps, D, BLOCK_B, BATCH_NORM)
        # ---- forward MLP
        a1 = tl.dot(z, _load_wt(w1_ptr, H1, D, H1P, DP), input_precision=PREC) + _load_v(b1_ptr, H1, H1P)[None, :]
        hl = _leaky(a1, slope)
        if L >= 2:
            h1 = hl
            a2 = tl.dot(h1, _load_wt(w2_ptr, H2, H1, H2P, H1P), input_precision=PREC) + _load_v(b2_ptr, H2, H2P)[None, :]
            hl = _leaky(a2, slope)
        if L >= 3:
            h2 = hl
            a3 = tl.dot(h2, _load_wt(w3_ptr, H3, H2, H3P, H2P), input_precision=PREC) + _load_v(b3_ptr, H3, H3P)[None, :]
            hl = _leaky(a3, slope)
        wo = _load_v(wo_ptr, HL, HLP)
        logit = tl.sum(hl * wo[None, :], 1) + tl.load(bo_ptr)
        tl.store(logit_ptr + rows, logit, mask=rm)
        gd, gg, acc_ld, acc_lg = _heads(logit, rm, d_t, g_t, inv_b, acc_ld, acc_lg, HINGE, HAS_G)
        # ---- backward with dlogit = 1: J = dlogit/da of the top layer
        acc_wo += tl.sum(hl * gd[:, None], 0)
        acc_bo += gd
        if L == 3:
            j = wo[None, :] * tl.where(a3 > 0, 1.0, slope)
            jd = j * gd[:, None]
            acc_w3 += tl.dot(tl.trans(jd), h2, input_precision=PREC)
            acc_b3 += tl.sum(jd, 0)
            j = tl.dot(j, _load_w(w3_ptr, H3, H2, H3P, H2P), input_precision=PREC) * tl.where(a2 > 0, 1.0, slope)
        if L == 2:
            j = wo[None, :] * tl.where(a2 > 0, 1.0, slope)
        if L >= 2:
            jd = j * gd[:, None]
            acc_w2 += tl.dot(tl.trans(jd), h1, input_precision=PREC)
            acc_b2 += tl.sum(jd, 0)
            j = tl.dot(j, _load_w(w2_ptr, H2, H1, H2P, H1P), input_precision=PREC) * tl.where(a1 > 0, 1.0, slope)
        if L == 1:
            j = wo[None, :] * tl.where(a1 > 0, 1.0, slope)
        jd = j * gd[:, None]
        acc_w1 += tl.dot(tl.trans(jd), z, input_precision=PREC)
        acc_b1 += tl.sum(jd, 0)
        # ---- through the normalization
        if BATCH_NORM or HAS_G:
            jz = tl.dot(j, _load_w(w1_ptr, H1, D, H1P, DP), input_precision=PREC)  # dlogit/dz, [BLOCK_B, DP]
            acc_gam, acc_bet, acc_s1, acc_s2 = _norm_backward(
                jz, gd, gg, xhat, gam, rs, msk, u_ptr, xoff, acc_gam, acc_bet, acc_s1, acc_s2,
                D, BATCH_NORM, HAS_G)

    # ---- per-program partials, flat in disc.parameters() order
    out = part_ptr + pid * TOTAL
    _store_bn(out, acc_gam, acc_bet, acc_s1, acc_s2, D, DP, OFF_S, BATCH_NORM)
    _store_w(out + OFF_W1, acc_w1, H1, D, H1P, DP)
    _store_v(out + OFF_W1 + H1 * D, acc_b1, H1, H1P)
    if L >= 2:
        _store_w(out + OFF_W2, acc_w2, H2, H1, H2P, H1P)
        _store_v(out + OFF_W2 + H2 * H1, acc_b2, H2, H2P)
    if L >= 3:
        _store_w(out + OFF_W3, acc_w3, H3, H2, H3P, H2P)
        _store_v(out + OFF_W3 + H3 * H2, acc_b3, H3, H3P)
    _store_v(out + OFF_WO, acc_wo, HL, HLP)
    _store_tail(out, acc_bo, acc_ld, acc_lg, HL, OFF_WO, OFF_LOSS)


@triton.jit
def _bn_dx_kernel(x_ptr, u_ptr, musd_ptr, gam_ptr, red_ptr, B,
                  D: tl.constexpr, DP: tl.constexpr, OFF_S: tl.constexpr, BLOCK_B: tl.constexpr):
    """Batch-norm backward of the G head, in place on u (= dxhat):
    ``dx = rstd * (dxhat - mean_b dxhat - xhat * mean_b(dxhat * xhat))``."""
    cols = tl.arange(0, DP)
    rows, rm, msk, off, x = _load_rows(x_ptr, tl.program_id(0), B, cols, cols < D, D, BLOCK_B)
    mu = tl.load(musd_ptr + cols)
    rstd = tl.load(musd_ptr + DP + cols)
    gam = _load_v(gam_ptr, D, DP)
    s1 = _load_v(red_ptr + OFF_S, D, DP) * gam / B
    s2 = _load_v(red_ptr + OFF_S + D, D, DP) * gam / B
    xhat = (x - mu[None, :]) * rstd[None, :]
    u = tl.load(u_ptr + off, mask=msk, other=0.0)
    dx = rstd[None, :] * (u - s1[None, :] - xhat * s2[None, :])
    tl.store(u_ptr + off, dx, mask=msk)

# ---------------------------------------------------------------- wide layers (chunked)
# Why a second main kernel: a register-resident [256, 256] fp32 weight tile or gradient
# accumulator does not fit shared memory / registers (sm_90 compile of the register kernel
# wanted 296-380 KB smem). Here activations live in a per-program scratch (L2-resident),
# every product is a loop over (N, K) chunks, and W / b grads are read-modify-written in
# the program's own partial row (deterministic: one program per row, barriers between
# phases). Same contract as _disc_main_kernel.


@triton.jit
def _fwd_layer(src, KP: tl.constexpr, KC: tl.constexpr, K, ACT: tl.constexpr, w_ptr, b_ptr,
               dst, NP: tl.constexpr, NC: tl.constexpr, N, slope, BB: tl.constexpr,
               PREC: tl.constexpr):
    """``dst = act(src) @ W^T + b`` (pre-activations), ``src``/``dst`` row-major [BB, KP/NP]."""
    r = tl.arange(0, BB)
    for n0 in range(0, NP, NC):
        nn = n0 + tl.arange(0, NC)
        acc = tl.zeros([BB, NC], tl.float32) + tl.load(b_ptr + nn, mask=nn < N, other=0.0)[None, :]
        for k0 in range(0, KP, KC):
            kk = k0 + tl.arange(0, KC)
            h = tl.load(src + r[:, None] * KP + kk[None, :])
            if ACT:
                h = _leaky(h, slope)
            w = tl.load(w_ptr + nn[None, :] * K + kk[:, None],
                        mask=(kk[:, None] < K) & (nn[None, :] < N), other=0.0)
            acc = tl.dot(h, w, acc, input_precision=PREC)
        tl.store(dst + r[:, None] * NP + nn[None, :], acc)


@triton.jit
def _bwd_layer(j_src, j_dst, JW: tl.constexpr, gd, h_src, KP: tl.constexpr, KC: tl.constexpr, K,
               ACT: tl.constexpr, w_ptr, N, NP: tl.constexpr, NC: tl.constexpr,
               pw_ptr, pb_ptr, slope, BB: tl.constexpr, PREC: tl.constexpr,
               PROPAGATE: tl.constexpr):
    """Partials ``dW += (gd*J)^T act(h)``, ``db += sum(gd*J)``; if PROPAGATE also
    ``J_prev = (J @ W) * leaky'(h)`` (h = the previous layer's pre-activations)."""
    r = tl.arange(0, BB)
    for n0 in range(0, NP, NC):
        nn = n0 + tl.arange(0, NC)
        jd = tl.load(j_src + r[:, None] * JW + nn[None, :]) * gd[:, None]
        tl.store(pb_ptr + nn, tl.load(pb_ptr + nn, mask=nn < N, other=0.0) + tl.sum(jd, 0),
                 mask=nn < N)
        for k0 in range(0, KP, KC):
            kk = k0 + tl.arange(0, KC)
            h = tl.load(h_src + r[:, None] * KP + kk[None, :])
            if ACT:
                h = _leaky(h, slope)
            m = (nn[:, None] < N) & (kk[None, :] < K)
            p = pw_ptr + nn[:, None] * K + kk[None, :]
            tl.store(p, tl.load(p, mask=m, other=0.0)
                     + tl.dot(tl.trans(jd), h, input_precision=PREC), mask=m)
    if PROPAGATE:
        for k0 in range(0, KP, KC):
            kk = k0 + tl.arange(0, KC)
            acc = tl.zeros([BB, KC], tl.float32)
            for n0 in range(0, NP, NC):
                nn = n0 + tl.arange(0, NC)
                j = tl.load(j_src + r[:, None] * JW + nn[None, :])
                w = tl.load(w_ptr + nn[:, None] * K + kk[None, :],
                            mask=(nn[:, None] < N) & (kk[None, :] < K), other=0.0)
                acc = tl.dot(j, w, acc, input_precision=PREC)
            a = tl.load(h_src + r[:, None] * KP + kk[None, :])
            tl.store(j_dst + r[:, None] * JW + kk[None, :], acc * tl.where(a > 0, 1.0, slope))


@triton.jit
def _disc_chunked_kernel(
        x_ptr, gam_ptr, bet_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, wo_ptr, bo_ptr,
        stat_ptr, n_stat, musd_ptr, logit_ptr, u_ptr, part_ptr, scr_ptr,
        B, n_tiles, d_t, g_t, slope, eps,
        D: tl.constexpr, DP: tl.constexpr, H1: tl.constexpr, H1P: tl.constexpr,
        H2: tl.constexpr, H2P: tl.constexpr, H3: tl.constexpr, H3P: tl.constexpr,
        HL: tl.constexpr, HLP: tl.constexpr, CD: tl.constexpr, C1: tl.constexpr,
        C2: tl.constexpr, C3: tl.constexpr, CL: tl.constexpr,
        L: tl.constexpr, BATCH_NORM: tl.constexpr, HINGE: tl.constexpr, HAS_G: tl.constexpr,
        BLOCK_B: tl.constexpr, STAT_BLOCK: tl.constexpr, PREC: tl.constexpr,
        OFF_W1: tl.constexpr, OFF_W2: tl.constexpr, OFF_W3: tl.constexpr, OFF_WO: tl.constexpr,
        OFF_LOSS: tl.constexpr, OFF_S: tl.constexpr, TOTAL: tl.constexpr,
        OFF_A1: tl.constexpr, OFF_A2: tl.constexpr, OFF_A3: tl.constexpr, OFF_AL: tl.constexpr,
        OFF_JA: tl.constexpr,
        OFF_JB: tl.constexpr, JW: tl.constexpr, SCR: tl.constexpr):
    """Same contract as _disc_main_kernel; scratch ``[P, SCR]`` holds z, the
    pre-activations A_i and two J buffers of this program's current tile."""
    pid = tl.program_id(0)
    P = tl.num_programs(0)
    inv_b = 1.0 / B
    cols = tl.arange(0, DP)
    cm = cols < D
    r = tl.arange(0, BLOCK_B)
    out = part_ptr + pid * TOTAL
    scr = scr_ptr + pid * SCR
    for i in range(0, TOTAL, 1024):  # W/b partials are accumulated in place: start at 0
        o = i + tl.arange(0, 1024)
        tl.store(out + o, tl.zeros([1024], tl.float32), mask=o < TOTAL)
    mu, rstd, gam, bet = _norm_prologue(stat_ptr, n_stat, musd_ptr, gam_ptr, bet_ptr, B, eps,
                                        D, DP, STAT_BLOCK, BATCH_NORM)
    zd = tl.zeros([DP], tl.float32)
    acc_gam, acc_bet, acc_s1, acc_s2 = zd, zd, zd, zd
    acc_bo = tl.zeros([BLOCK_B], tl.float32)
    acc_ld = tl.zeros([BLOCK_B], tl.float32)
    acc_lg = tl.zeros([BLOCK_B], tl.float32)
    a_last = scr + OFF_AL
    tl.debug_barrier()

    for t in range(pid, n_tiles, P):
        rows, rm, msk, xoff, x = _load_rows(x_ptr, t, B, cols, cm, D, BLOCK_B)
        xhat, z, rs = _normalize(x, msk, mu, rstd, gam, bet, eps, D, BLOCK_B, BATCH_NORM)
        tl.store(scr + r[:, None] * DP + cols[None, :], z)
        tl.debug_barrier()
        _fwd_layer(scr, DP, CD, D, False, w1_ptr, b1_ptr, scr + OFF_A1, H1P, C1, H1, slope,
                   BLOCK_B, PREC)
        tl.debug_barrier()
        if L >= 2:
            _fwd_layer(scr + OFF_A1, H1P, C1, H1, True, w2_ptr, b2_ptr, scr + OFF_A2, H2P, C2,
                       H2, slope, BLOCK_B, PREC)
            tl.debug_barrier()
        if L >= 3:
            _fwd_layer(scr + OFF_A2, H2P, C2, H2, True, w3_ptr, b3_ptr, scr + OFF_A3, H3P, C3,
                       H3, slope, BLOCK_B, PREC)
            tl.debug_barrier()
        logit = tl.zeros([BLOCK_B], tl.float32) + tl.load(bo_ptr)
        for k0 in range(0, HLP, CL):
            kk = k0 + tl.arange(0, CL)
            h = _leaky(tl.load(a_last + r[:, None] * HLP + kk[None, :]), slope)
            logit += tl.sum(h * _load_v(wo_ptr + k0, HL - k0, CL)[None, :], 1)
        tl.store(logit_ptr + rows, logit, mask=rm)
        gd, gg, acc_ld, acc_lg = _heads(logit, rm, d_t, g_t, inv_b, acc_ld, acc_lg, HINGE, HAS_G)
        acc_bo += gd
        # top J = wo * leaky'(A_L) into JA; wo grad in place
        for k0 in range(0, HLP, CL):
            kk = k0 + tl.arange(0, CL)
            a = tl.load(a_last + r[:, None] * HLP + kk[None, :])
            km = kk < HL
            pw = out + OFF_WO + kk
            tl.store(pw, tl.load(pw, mask=km, other=0.0)
                     + tl.sum(_leaky(a, slope) * gd[:, None], 0), mask=km)
            j = _load_v(wo_ptr + k0, HL - k0, CL)[None, :] * tl.where(a > 0, 1.0, slope)
            tl.store(scr + OFF_JA + r[:, None] * JW + kk[None, :], j)
        tl.debug_barrier()
        j1 = scr + OFF_JA
        if L == 3:
            _bwd_layer(scr + OFF_JA, scr + OFF_JB, JW, gd, scr + OFF_A2, H2P, C2, H2, True,
                       w3_ptr, H3, H3P, C3, out + OFF_W3, out + OFF_W3 + H3 * H2, slope,
                       BLOCK_B, PREC, True)
            tl.debug_barrier()
            _bwd_layer(scr + OFF_JB, scr + OFF_JA, JW, gd, scr + OFF_A1, H1P, C1, H1, True,
                       w2_ptr, H2, H2P, C2, out + OFF_W2, out + OFF_W2 + H2 * H1, slope,
                       BLOCK_B, PREC, True)
            tl.debug_barrier()
        if L == 2:
            _bwd_layer(scr + OFF_JA, scr + OFF_JB, JW, gd, scr + OFF_A1, H1P, C1, H1, True,
                       w2_ptr, H2, H2P, C2, out + OFF_W2, out + OFF_W2 + H2 * H1, slope,
                       BLOCK_B, PREC, True)
            tl.debug_barrier()
            j1 = scr + OFF_JB
        _bwd_layer(j1, j1, JW, gd, scr, DP, CD, D, False, w1_ptr, H1, H1P, C1,
                   out + OFF_W1, out + OFF_W1 + H1 * D, slope, BLOCK_B, PREC, False)
        if BATCH_NORM or HAS_G:
            jz = tl.zeros([BLOCK_B, DP], tl.float32)  # dlogit/dz
            for n0 in range(0, H1P, C1):
                nn = n0 + tl.arange(0, C1)
                w = tl.load(w1_ptr + nn[:, None] * D + cols[None, :],
                            mask=(nn[:, None] < H1) & cm[None, :], other=0.0)
                jz = tl.dot(tl.load(j1 + r[:, None] * JW + nn[None, :]), w, jz,
                            input_precision=PREC)
            acc_gam, acc_bet, acc_s1, acc_s2 = _norm_backward(
                jz, gd, gg, xhat, gam, rs, msk, u_ptr, xoff, acc_gam, acc_bet, acc_s1, acc_s2,
                D, BATCH_NORM, HAS_G)
        tl.debug_barrier()  # scratch and in-place partials are reused by the next tile

    _store_bn(out, acc_gam, acc_bet, acc_s1, acc_s2, D, DP, OFF_S, BATCH_NORM)
    _store_tail(out, acc_bo, acc_ld, acc_lg, HL, OFF_WO, OFF_LOSS)
