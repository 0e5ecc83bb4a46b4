"""FSQ quantiser (spec §5) and mixed-radix token packing (spec §6).

FSQ, per latent dim with L levels:

    z'  = tanh(z / T) * T                      (T = 1)
    b_i = (2i - L + 1) / L, i = 0..L-1         (L = 4: -0.75, -0.25, 0.25, 0.75)
    idx = argmin_i |z' - b_i|                  (exact ties -> lower index)
    out = z + stopgrad(b_idx - z)              (straight-through w.r.t. the pre-tanh z)

No parameters, no codebook, no auxiliary loss. This is not Mentzer et al.'s grid.

Packing: dims are grouped G = 7 at a time (the last group padded with radix-1 zero digits), each
group becomes one token. Big-endian (the paper's closed form, default):
``token = sum_k i_k * prod_{j>k} r_j``; little-endian (the reference code): ``prod_{j<k} r_j``.
For the paper: 18 tokens of vocabulary 16,384 and one of 16 per frame (256 bits).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

_ORDERS = ("big", "little")


class FSQ(nn.Module):
    """Finite scalar quantisation with the paper's symmetric grid.

    Args:
        levels: levels per contiguous dim group, e.g. (4, 4, 4, 4): `dim` is split into
            len(levels) equal groups and every dim of group j has levels[j] levels.
        dim: latent channels C (128).
        temperature: T of the tanh bound.
    Shapes: forward(z [B, C, T]) -> (z_q [B, C, T], idx [B, T, C] int64).
    """

    def __init__(self, levels: Sequence[int] = (4, 4, 4, 4), dim: int = 128, temperature: float = 1.0) -> None:
        super().__init__()
        if dim % len(levels) != 0:
            raise ValueError(f"FSQ dim={dim} must split evenly into len(levels)={len(levels)} groups")
        if any(int(level) < 2 for level in levels):
            raise ValueError(f"every FSQ level must be >= 2, got {tuple(levels)}")
        self.levels = tuple(int(level) for level in levels)
        self.dim = dim
        self.temperature = float(temperature)
        per_group = dim // len(self.levels)
        self.radices: tuple[int, ...] = tuple(level for level in self.levels for _ in range(per_group))
        self.register_buffer("_radix", torch.tensor(self.radices, dtype=torch.int64), persistent=False)

    def grid(self, level: int) -> torch.Tensor:
        """The L grid values b_i = (2i - L + 1)/L, float32 [L]."""
        i = torch.arange(level, dtype=torch.float32)
        return (2 * i - level + 1) / level

    def quantize_indices(self, z: torch.Tensor) -> torch.Tensor:
        """idx [B, T, C] int64 of z [B, C, T]: argmin over the grid of the bounded value."""
        if z.dim() != 3 or z.shape[1] != self.dim:
            raise ValueError(f"FSQ expects z of shape [B, {self.dim}, T], got {tuple(z.shape)}")
        bounded = torch.tanh(z.float() / self.temperature) * self.temperature
        per_group = self.dim // len(self.levels)
        parts = []
        for j, level in enumerate(self.levels):
            zg = bounded[:, j * per_group : (j + 1) * per_group, :]  # [B, c, T]
            dist = (zg[..., None] - self.grid(level).to(z.device)).abs()  # [B, c, T, L]
            parts.append(dist.argmin(dim=-1))  # first minimum = lower index on exact ties
        return torch.cat(parts, dim=1).transpose(1, 2).contiguous()

    def dequantize(self, idx: torch.Tensor) -> torch.Tensor:
        """Grid values (2*idx - L + 1)/L [B, C, T] float32 of idx [B, T, C]."""
        if idx.dim() != 3 or idx.shape[-1] != self.dim:
            raise ValueError(f"FSQ.dequantize expects idx of shape [B, T, {self.dim}], got {tuple(idx.shape)}")
        radix = self._radix.to(idx.device)
        if bool(((idx < 0) | (idx >= radix)).any()):
            raise ValueError(f"FSQ indices out of range: every dim must lie in [0, L) for levels {self.levels}")
        values = (2 * idx - radix + 1).float() / radix.float()
        return values.transpose(1, 2).contiguous()

    def usage_deficit(self, z: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
        """How far each dim's level usage is from uniform, as a differentiable loss (not in the paper).

        Soft assignments p_i = softmax_i(-(z' - b_i)^2 / temperature) of the bounded values z'
        are averaged over batch and time into each dim's marginal usage q; the result is the mean
        over dims of (log L - H(q)) / log L: 0 when every level of every dim is used equally
        often, 1 when each dim uses one level. Adding it to the stage-2 loss counters the
        codebook collapse seen at 50 Hz (docs/model.md, departure D5); its gradient flows
        through the tanh bound, unlike the straight-through path of :meth:`forward`.

        Args:
            z: [B, C, T] pre-quantisation values.
            temperature: softness of the assignment, in squared grid units.
        Returns:
            scalar tensor in [0, 1].
        """
        bounded = torch.tanh(z.float() / self.temperature) * self.temperature
        per_group = self.dim // len(self.levels)
        deficits = []
        for j, level in enumerate(self.levels):
            zg = bounded[:, j * per_group : (j + 1) * per_group, :]  # [B, c, T]
            logits = -(zg[..., None] - self.grid(level).to(z.device)).pow(2) / temperature  # [B, c, T, L]
            q = logits.softmax(dim=-1).mean(dim=(0, 2))  # [c, L] marginal usage per dim
            entropy = -(q * q.clamp_min(1e-12).log()).sum(dim=-1)  # [c]
            deficits.append((math.log(level) - entropy) / math.log(level))
        return torch.cat(deficits).mean()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantise z [B, C, T].

        Returns:
            z_q [B, C, T]: the grid values; when z requires grad, z + stopgrad(b - z) so the
                gradient is the identity w.r.t. the pre-tanh z (the value may differ from b by
                rounding; without grad the exact grid values are returned, spec §6).
            idx [B, T, C] int64 level indices.
        """
        idx = self.quantize_indices(z)
        values = self.dequantize(idx).to(z.dtype)
        if z.requires_grad:
            return z + (values - z).detach(), idx
        return values, idx


def _check_order(order: str) -> None:
    if order not in _ORDERS:
        raise ValueError(f"pack order {order!r} is not valid; choose 'big' or 'little'")


def _group_radices(radices: Sequence[int], group: int) -> torch.Tensor:
    """[n_tokens, group] int64 radices, the last group padded with radix 1."""
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    n_tokens = -(-len(radices) // group)
    padded = list(radices) + [1] * (n_tokens * group - len(radices))
    return torch.tensor(padded, dtype=torch.int64).view(n_tokens, group)


def _place_values(radices: torch.Tensor, order: str) -> torch.Tensor:
    """Weight of each digit [n_tokens, group]: prod_{j>k} r_j (big) or prod_{j<k} r_j (little)."""
    _check_order(order)
    if order == "big":
        flipped = radices.flip(-1)
        return (torch.cumprod(flipped, dim=-1) // flipped).flip(-1)
    return torch.cumprod(radices, dim=-1) // radices


def token_vocab_sizes(radices: Sequence[int], group: int = 7) -> tuple[int, ...]:
    """Vocabulary of each token: the product of its group's radices (18 x 16384 + 16 for the paper)."""
    return tuple(int(math.prod(radices[g : g + group])) for g in range(0, len(radices), group))


def pack(idx: torch.Tensor, radices: Sequence[int], group: int = 7, order: str = "big") -> torch.Tensor:
    """Mixed-radix pack FSQ indices into tokens.

    Args:
        idx: [B, T, C] integer level indices, idx[..., c] in [0, radices[c]).
        radices: levels per dim, length C.
        group: dims per token G.
        order: "big" (paper, default) or "little" (reference code).
    Returns:
        tokens [B, T, ceil(C/G)] int64.
    Raises:
        ValueError: wrong shape or an index outside its radix.
    """
    if idx.dim() != 3 or idx.shape[-1] != len(radices):
        raise ValueError(f"pack expects idx of shape [B, T, {len(radices)}], got {tuple(idx.shape)}")
    r = torch.tensor(list(radices), dtype=torch.int64, device=idx.device)
    if bool(((idx < 0) | (idx >= r)).any()):
        raise ValueError("pack: some FSQ index lies outside [0, radix) for its dim")
    grouped = _group_radices(radices, group).to(idx.device)
    n_tokens = grouped.shape[0]
    digits = torch.nn.functional.pad(idx.long(), (0, n_tokens * group - len(radices)))  # radix-1 digits = 0
    digits = digits.view(*idx.shape[:2], n_tokens, group)
    return (digits * _place_values(grouped, order)).sum(dim=-1)


def unpack(tokens: torch.Tensor, radices: Sequence[int], group: int = 7, order: str = "big") -> torch.Tensor:
    """Exact inverse of :func:`pack`.

    Args:
        tokens: [B, T, ceil(C/G)] integer tokens, token g in [0, V_g).
        radices, group, order: as for :func:`pack`.
    Returns:
        idx [B, T, C] int64.
    Raises:
        ValueError: wrong shape or a token outside its vocabulary.
    """
    grouped = _group_radices(radices, group).to(tokens.device)
    n_tokens = grouped.shape[0]
    if tokens.dim() != 3 or tokens.shape[-1] != n_tokens:
        raise ValueError(f"unpack expects tokens of shape [B, T, {n_tokens}], got {tuple(tokens.shape)}")
    vocab = torch.tensor(token_vocab_sizes(radices, group), dtype=torch.int64, device=tokens.device)
    tokens = tokens.long()
    if bool(((tokens < 0) | (tokens >= vocab)).any()):
        raise ValueError(f"unpack: some token lies outside its vocabulary {sorted(set(vocab.tolist()))}")
    digits = (tokens[..., None] // _place_values(grouped, order)) % grouped  # [B, T, n_tokens, G]
    return digits.flatten(-2)[..., : len(radices)]
