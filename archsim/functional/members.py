r"""A population of ``K`` independent models of the same shapes, trained as one batched computation.

Each member has its own weights and devices; the members share the data stream. A network of a
population runs its usual code on ``K*B`` rows per timestep, ordered ``(member, sequence)``, and
any tensor of rows the tiles see is ordered ``(m, member, sequence)`` for some leading ``m`` (the
timesteps of a batched sweep): row ``r`` belongs to member ``(r // B) % K``. Everything a tile
does row by row (DAC, noise and bound management, ADC, the pulse probabilities of an update) is
then unchanged; only the array products pick each row's own member's matrix. This module holds
those products: the tiles keep a member's weights as rows ``k*out .. (k+1)*out`` of one
``[K*out, in]`` tensor (so the per-device rules of :mod:`archsim.functional.devices` run on all
members at once) and view it as ``[K, out, in]`` here.

Why batched: on an accelerator a training step is launch-bound, and ``K`` members cost one op
where ``K`` separate runs cost ``K`` (on an H200, 16 LSTM2-512 members train at about cuDNN's
floating-point step per model, one alone at 8-19x; ``reports/functional_step_benchmark/``). On a
CPU it saves nothing: at batch 32 the ops are already compute- or memory-bound there. The random
draws of every op (output noise, rounding, update noise, dropout) come from one stream for the
whole population, so a member equals a separate run with its seed in distribution, not draw for
draw; its initial weights and device-to-device variations come from its own seed and equal the
separate run's exactly.
"""
from __future__ import annotations

import torch

from archsim.functional.workspace import Workspace


class Members:
    """The row layout of a population of ``K`` members: ``B`` rows per member and timestep.

    ``B`` is set by the network before each forward sweep (:meth:`set_batch`); the tiles of the
    network share this object.
    """

    def __init__(self, K: int):
        if K < 2:
            raise ValueError(f"a population has at least 2 members, got {K}")
        self.K = int(K)
        self.B = 0
        self._member_index: dict[tuple[int, int, str], torch.Tensor] = {}
        self._kept: Workspace | None = None   # _addmm_by_member_'s product, made on first use

    def set_batch(self, B: int) -> None:
        self.B = int(B)

    # -- layout ---------------------------------------------------------------------------------
    def groups(self, R: int) -> int:
        """The leading ``m`` of ``R`` rows ordered ``(m, member, sequence)``."""
        KB = self.K * self.B
        if self.B <= 0 or R % KB:
            raise ValueError(f"{R} rows are not a whole number of timesteps of {self.K} members x "
                             f"{self.B} sequences")
        return R // KB

    def member_of(self, rows: torch.Tensor) -> torch.Tensor:
        """The member of each row index in ``rows``."""
        return torch.div(rows, self.B, rounding_mode="floor").remainder_(self.K)

    def member_rows(self, R: int, device) -> torch.Tensor:
        """The member of each of ``R`` rows (made once per size)."""
        key = (R, self.B, str(device))
        idx = self._member_index.get(key)
        if idx is None:
            idx = self.member_of(torch.arange(R, device=device))
            self._member_index[key] = idx
        return idx

    def by_member(self, v: torch.Tensor) -> torch.Tensor:
        """Rows ``[R, n]`` ordered ``(m, member, sequence)`` as ``[K, m*B, n]`` (a view when
        ``m == 1``, else a copy)."""
        m = self.groups(v.shape[0])
        if m == 1:
            return v.view(self.K, self.B, v.shape[1])
        return v.view(m, self.K, self.B, v.shape[1]).transpose(0, 1).reshape(self.K, m * self.B, v.shape[1])

    def to_rows(self, y: torch.Tensor, m: int) -> torch.Tensor:
        """``[K, m*B, n]`` back to rows ``[m, K, B, n]`` (a view)."""
        return y.view(self.K, m, self.B, y.shape[-1]).transpose(0, 1)

    # -- products -------------------------------------------------------------------------------
    def mm(self, v: torch.Tensor, w: torch.Tensor, out: torch.Tensor | None = None,
           rows: torch.Tensor | None = None) -> torch.Tensor:
        """Row ``r`` of ``v [R, n]`` times its member's matrix of ``w [K, n, p]``: ``[R, p]``.

        ``rows``: the row indices ``v``'s rows had in a whole batch (a subset, e.g. the rows that
        bound management repeats), when they are not a whole batch themselves."""
        R, p = v.shape[0], w.shape[2]
        if out is None:
            out = torch.empty(R, p, device=v.device, dtype=v.dtype)
        if rows is not None:
            member = self.member_of(rows)
            for k in torch.unique(member).tolist():
                sel = (member == k).nonzero().squeeze(1)
                out.index_copy_(0, sel, torch.mm(v.index_select(0, sel), w[k]))
            return out
        m = self.groups(R)
        if m == 1:
            torch.bmm(v.view(self.K, self.B, -1), w, out=out.view(self.K, self.B, p))
        else:
            out.view(m, self.K, self.B, p).copy_(self.to_rows(torch.bmm(self.by_member(v), w), m))
        return out

    def addmm_(self, y: torch.Tensor, v: torch.Tensor, w: torch.Tensor, *, beta: float = 1.0,
               alpha: float = 1.0) -> torch.Tensor:
        """``y <- beta*y + alpha*(v times each row's member matrix)`` in place (``y [R, p]``)."""
        m = self.groups(v.shape[0])
        if m == 1 and y.is_contiguous():
            y.view(self.K, self.B, y.shape[1]).baddbmm_(v.view(self.K, self.B, -1), w, beta=beta,
                                                         alpha=alpha)
            return y
        if y.device.type == "cpu" and y.is_contiguous() and v.is_contiguous():
            return self._addmm_by_member_(y, v, w, m, beta, alpha)
        prod = torch.bmm(self.by_member(v), w)
        if beta != 1.0:
            y.mul_(beta)
        y.view(m, self.K, self.B, y.shape[1]).add_(self.to_rows(prod, m), alpha=alpha)
        return y

    #: Below this many columns of ``v`` a CPU product of several timesteps runs as one batched
    #: product per member on strided views (no copies); above it, as one copied 2-D product.
    NARROW = 8

    def _addmm_by_member_(self, y, v, w, m: int, beta: float, alpha: float) -> torch.Tensor:
        """:meth:`addmm_` of ``m > 1`` timesteps on a CPU, member by member: each member's rows
        (a strided view) times its matrix, added in place. Cheaper there than reordering the
        rows into member blocks and back (the accelerator path, one op for all members): 0.85x
        for a 513-column block, 0.12x for the one-column bias block of an LSTM2-512 population
        of 4 over 100 timesteps."""
        K, B, n, p = self.K, self.B, v.shape[1], y.shape[1]
        v4, y4 = v.view(m, K, B, n), y.view(m, K, B, p)
        for k in range(K):
            if n <= self.NARROW:
                y4[:, k].baddbmm_(v4[:, k], w[k].expand(m, n, p), beta=beta, alpha=alpha)
                continue
            prod = torch.mm(v4[:, k].reshape(m * B, n), w[k], out=self._product_buffer(m * B, p, y))
            prod = prod.view(m, B, p)
            yk = y4[:, k].mul_(beta) if beta != 1.0 else y4[:, k]
            yk.add_(prod, alpha=alpha)
        return y

    def _product_buffer(self, rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
        """One member's product of :meth:`_addmm_by_member_`, in a tensor kept between calls: it
        is as large as a whole single-model batch, and a fresh one per member and call faults in
        its pages anew once it is past the allocator's reuse threshold. Its row count varies with
        the block of timesteps, so the kept tensor only grows."""
        if self._kept is None or self._kept.device != like.device:
            self._kept = Workspace(like.device, like.dtype)
        return self._kept.at_least("product", (rows, cols), like.dtype)

    def flat_index(self, index: torch.Tensor, n: int) -> torch.Tensor:
        """Row ``r``'s ``index[r]`` into its member's block of ``n``: ``member(r)*n + index[r]``."""
        return self.member_rows(index.shape[0], index.device) * n + index

    # -- updates: rows member by member ------------------------------------------------------------
    # A pulsed update only sums over its rows, in any order within a member (the exact mode
    # keeps each member's own order), so the tiles reorder an update's rows once, member-major
    # (member k's rows are the k-th block of R/K), and then every sum is a plain batched product.
    def member_major(self, v: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ordered ``(m, member, sequence)`` reordered ``(member, m, sequence)`` (the tensor
        itself when ``m == 1``: it already is; else a copy, into ``out`` when given: a
        workspace, since a population's update operands are large enough that a fresh one
        costs page faults every step). Works on ``[R]`` and ``[R, n]``."""
        m = self.groups(v.shape[0])
        if m == 1:
            return v
        rest = v.shape[1:]
        blocks = v.view(m, self.K, self.B, *rest).transpose(0, 1)
        if out is None:
            return blocks.reshape(v.shape)
        out.view(self.K, m, self.B, *rest).copy_(blocks)
        return out

    def outer_sums(self, x: torch.Tensor, d: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Per member, the sum over its rows of ``x_r^T d_r``: ``[K, n, p]`` from member-major
        ``x [R, n]``, ``d [R, p]`` (the sums of a pulsed update); into ``out`` when given."""
        return torch.bmm(x.view(self.K, -1, x.shape[1]).transpose(1, 2),
                         d.view(self.K, -1, d.shape[1]), out=out)

    def major_flat_index(self, index: torch.Tensor, n: int) -> torch.Tensor:
        """Member-major row ``r``'s ``index[r]`` into its member's block of ``n``."""
        R = index.shape[0]
        key = ("major", R, str(index.device))
        member = self._member_index.get(key)
        if member is None:
            member = self._member_index[key] = torch.div(
                torch.arange(R, device=index.device), R // self.K, rounding_mode="floor")
        return member * n + index
