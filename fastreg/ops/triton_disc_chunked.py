"""Main kernel of the fused disc step for wide layers (any padded width > 128).

Why a second kernel: a register-resident [256, 256] fp32 weight tile or gradient
accumulator does not fit shared memory / registers (sm_90 compile of the
register kernel wanted 296-380 KB smem). Here activations live in a per-program
scratch (L2-resident), every product is a loop over (N, K) chunks, and W / b
grads are read-modify-written in the program's own partial row (deterministic:
one program per row, barriers between phases). Same contract as
triton_disc_kernels._disc_main_kernel.
"""
import triton
import triton.language as tl

from .triton_disc_kernels import (_heads, _leaky, _load_rows, _load_v, _norm_backward,
                                  _norm_prologue, _normalize, _store_bn, _store_tail)


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
