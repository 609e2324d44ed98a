"""Attention architectures for the zoo (``converters.zoo``), small, random weights.

ViT/DeiT (tokens, attention, ``b, n, d = x.shape`` reshapes: exported by TorchScript they are
``Shape -> Gather -> Concat -> Reshape`` chains), a Swin stage (6-D window partition,
``torch.roll`` shifts, relative-position-bias gather, masked attention, patch merging by strided
slices) and MobileViT (MobileNetV2 blocks with an unfold -> transformer -> fold block, the
ml-cvnets 4-D way).
"""

from __future__ import annotations

import torch
from torch import nn

from converters.zoo_convnets import conv_bn


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer; the reshapes read ``b, n, d`` from the tensor."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (
            self.qkv(self.ln1(x))
            .reshape(b, n, 3, self.heads, d // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        att = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.ln2(x))


class DeiTTiny(nn.Module):
    """DeiT: a ViT with a class and a distillation token; inference averages both heads."""

    def __init__(self, image: int = 32, patch: int = 8, dim: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.dist = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 2, dim) * 0.02)
        self.layers = nn.Sequential(EncoderLayer(dim, 4), EncoderLayer(dim, 4))
        self.norm = nn.LayerNorm(dim)
        self.head, self.head_dist = nn.Linear(dim, classes), nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        b = t.shape[0]
        t = torch.cat([self.cls.expand(b, -1, -1), self.dist.expand(b, -1, -1), t], dim=1)
        t = self.norm(self.layers(t + self.pos))
        return (self.head(t[:, 0]) + self.head_dist(t[:, 1])) / 2


# -- Swin ---------------------------------------------------------------------------------
class WindowAttention(nn.Module):
    bias_index: torch.Tensor

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.02)
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("bias_index", rel[..., 0] * (2 * window - 1) + rel[..., 1])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.bias_table[self.bias_index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)
        att = att + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            att = att.reshape(bw // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            att = att.reshape(-1, self.heads, n, n)
        out = (torch.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, res: int, window: int, heads: int, shift: int) -> None:
        super().__init__()
        self.res, self.window, self.shift = res, window, shift
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        mask = None
        if shift:  # the standard mask: tokens from different regions of a shifted window
            img = torch.zeros(1, res, res, 1)
            cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
            for i, (hs, ws) in enumerate((h, w) for h in cuts for w in cuts):
                img[:, hs, ws, :] = i
            win = self._partition(img).squeeze(-1)
            diff = win.unsqueeze(1) - win.unsqueeze(2)
            mask = diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)
        self.register_buffer("mask", mask)

    def _partition(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        s = self.window
        x = x.view(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(-1, s * s, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = w = self.res
        s = self.window
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(self._partition(y), self.mask)
        y = y.view(b, h // s, w // s, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int, res: int) -> None:
        super().__init__()
        self.res = res
        self.norm, self.reduce = nn.LayerNorm(4 * dim), nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, self.res, self.res, c)
        parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        return self.reduce(self.norm(torch.cat(parts, -1).view(b, -1, 4 * c)))


class SwinTiny(nn.Module):
    """Two Swin stages (window 4, shifted by 2) on a 64x64 image."""

    def __init__(self, dim: int = 24, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 4, 4)
        self.embed_norm = nn.LayerNorm(dim)
        self.stage1 = nn.Sequential(
            SwinBlock(dim, 16, 4, 2, 0), SwinBlock(dim, 16, 4, 2, 2), PatchMerging(dim, 16)
        )
        self.stage2 = nn.Sequential(SwinBlock(2 * dim, 8, 4, 4, 0), SwinBlock(2 * dim, 8, 4, 4, 2))
        self.norm, self.head = nn.LayerNorm(2 * dim), nn.Linear(2 * dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed_norm(self.embed(x).flatten(2).transpose(1, 2))
        t = self.norm(self.stage2(self.stage1(t)))
        return self.head(t.mean(dim=1))


# -- MobileViT ----------------------------------------------------------------------------
class InvertedResidualSiLU(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int = 2) -> None:
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(
            conv_bn(cin, mid, 1, act=nn.SiLU()),
            conv_bn(mid, mid, 3, stride, groups=mid, act=nn.SiLU()),
            conv_bn(mid, cout, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.use_res else y


class MobileViTBlock(nn.Module):
    """Local 3x3 -> 1x1 to d, unfold 2x2 patches, transformer, fold, 1x1 back, fuse."""

    def __init__(self, c: int, d: int, patch: int = 2, heads: int = 2) -> None:
        super().__init__()
        self.p = patch
        self.local = nn.Sequential(conv_bn(c, c, 3, act=nn.SiLU()), nn.Conv2d(c, d, 1, bias=False))
        self.transformer = nn.Sequential(EncoderLayer(d, heads), nn.LayerNorm(d))
        self.proj = conv_bn(d, c, 1, act=nn.SiLU())
        self.fuse = conv_bn(2 * c, c, 3, act=nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.local(x)
        b, d, h, w = y.shape
        p, nh, nw = self.p, h // self.p, w // self.p
        # [B, D, H, W] -> [B*D*nh, p, nw, p] -> [B*D*nh, nw, p, p] -> [B, D, N, P] -> [B*P, N, D]
        y = y.reshape(b * d * nh, p, nw, p).transpose(1, 2).reshape(b, d, nh * nw, p * p)
        y = self.transformer(y.transpose(1, 3).reshape(b * p * p, nh * nw, d))
        y = y.reshape(b, p * p, nh * nw, d).transpose(1, 3).reshape(b * d * nh, nw, p, p)
        y = self.proj(y.transpose(1, 2).reshape(b, d, h, w))
        return self.fuse(torch.cat([x, y], dim=1))


class MobileViTTiny(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(3, 16, 3, 2, act=nn.SiLU()),
            InvertedResidualSiLU(16, 24, 2),
            MobileViTBlock(24, 32),
            InvertedResidualSiLU(24, 32, 2),
            MobileViTBlock(32, 48),
            conv_bn(32, 64, 1, act=nn.SiLU()),
        )
        self.head = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))
