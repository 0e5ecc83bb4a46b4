"""Training data: utterances resampled once to 24 kHz, random equal-length crops, augmentation.

The training set is small (the bundled one is ~56 min, ~80M samples, ~320 MB as float32), so
every utterance is decoded and resampled once (soxr VHQ, through `audiocore.audio`) and kept in RAM.

Randomness is a pure function of `(seed, draw, index)`: a crop's offset and its augmentation
depend only on the dataset seed, the "draw" (the epoch for `__getitem__`, the training step
in `jepa.train`) and the item index. Nothing depends on worker processes, DDP ranks or on how
many items were drawn before, which is what makes training resume exactly and lets
`torch.utils.data.DistributedSampler` shard the dataset without changing what each item is.

Crops are equal-length (paper-spec §10 item 8). Utterances shorter than one crop are dropped
(their number is reported), so no sample of a batch is padding, unless ``pad_short=True``: then
such an utterance is one item, zero-padded at the end to the crop length, and
:meth:`CropDataset.batch_with_lengths` reports how many samples of each item are real so that
the losses can ignore the padding (stage 2's ``short_utterances="pad"``).
Augmentation follows the reference code (paper-spec §4.5): with p = 0.3 a gain drawn from
U(0.8, 1.2); with p = 0.2 white noise with sigma = 0.001; then clamp to [-1, 1].
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
"""Sample rate of every waveform this module returns (Hz)."""


@dataclass(frozen=True)
class Augmentation:
    """Waveform augmentation of the reference code (paper-spec §4.5).

    Attributes:
        gain_p: probability of multiplying the crop by a gain.
        gain_range: (low, high) of the uniform gain distribution.
        noise_p: probability of adding white Gaussian noise.
        noise_std: standard deviation of that noise (linear amplitude, full scale = 1).
        clamp: the result is clamped to [-clamp, clamp].
    """

    gain_p: float = 0.3
    gain_range: tuple[float, float] = (0.8, 1.2)
    noise_p: float = 0.2
    noise_std: float = 1e-3
    clamp: float = 1.0

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment one crop.

        Args:
            wav: float32 samples [L] (not modified).
            rng: the generator that decides everything random here.

        Returns:
            a new float32 array [L].
        """
        out = wav.astype(np.float32, copy=True)
        # Draw every random number unconditionally, so the stream consumed per crop is fixed.
        u_gain, gain, u_noise = rng.random(), rng.uniform(*self.gain_range), rng.random()
        if u_gain < self.gain_p:
            out *= np.float32(gain)
        if u_noise < self.noise_p:
            out += rng.standard_normal(out.shape[0]).astype(np.float32) * np.float32(self.noise_std)
        np.clip(out, -self.clamp, self.clamp, out=out)
        return out


NO_AUGMENTATION = Augmentation(gain_p=0.0, noise_p=0.0)


def load_utterances(
    spec: str | Path,
    sample_rate: int = SAMPLE_RATE,
    limit: int | None = None,
) -> tuple[list[np.ndarray], list[str]]:
    """Decode and resample every utterance of a dataset.

    Args:
        spec: anything `audiocore.datasets.load_dataset` accepts: a TSV/JSONL manifest, a
            LibriSpeech-layout folder, a folder of audio files, or "default".
        sample_rate: target rate in Hz (soxr VHQ resampling inside `audiocore.audio.load_audio`).
        limit: keep only the first `limit` utterances (None: all).

    Returns:
        (waveforms, ids): mono float32 arrays [T_i] at `sample_rate`, and utterance ids.

    Raises:
        ValueError: (DatasetError / AudioError) naming the manifest or file that is unusable.
    """
    from audiocore.audio import load_audio
    from audiocore.datasets import load_dataset

    utterances = load_dataset(str(spec), limit=limit)
    if not utterances:
        raise ValueError(f"dataset {spec!s} holds no utterances")
    waves: list[np.ndarray] = []
    ids: list[str] = []
    for utt in utterances:
        wav, sr = load_audio(utt.path, target_sr=sample_rate)
        if sr != sample_rate:
            raise ValueError(f"{utt.path}: load_audio returned {sr} Hz, expected {sample_rate} Hz")
        waves.append(np.ascontiguousarray(wav, dtype=np.float32))
        ids.append(utt.id)
    return waves, ids


class CropDataset(torch.utils.data.Dataset):
    """Equal-length random crops of in-memory utterances.

    One "epoch" holds ceil(T_i / crop) items for utterance i, so long utterances are drawn
    in proportion to their duration. Item `index` of draw `draw` is a crop of utterance
    `owner[index]` at an offset drawn uniformly from every possible start.

    Args:
        waves: mono float32 waveforms [T_i] at `sample_rate`.
        crop_samples: crop length L in samples (all items have exactly this length).
        seed: base seed of every random draw.
        augment: augmentation applied to each crop (`NO_AUGMENTATION` to disable).
        ids: optional utterance ids (for messages).
        pad_short: keep utterances shorter than a crop as one zero-padded item each
            (default False: drop them).

    Raises:
        ValueError: if `crop_samples` < 1 or no utterance is usable.
    """

    def __init__(
        self,
        waves: list[np.ndarray],
        crop_samples: int,
        seed: int = 0,
        augment: Augmentation = Augmentation(),
        ids: list[str] | None = None,
        pad_short: bool = False,
    ) -> None:
        if crop_samples < 1:
            raise ValueError(f"crop_samples must be >= 1, got {crop_samples}")
        shortest = 1 if pad_short else crop_samples
        keep = [i for i, w in enumerate(waves) if w.ndim == 1 and w.shape[0] >= shortest]
        if not keep:
            longest = max((w.shape[-1] for w in waves), default=0)
            raise ValueError(
                f"no utterance is at least crop_samples={crop_samples} long (longest has {longest} samples); "
                "use a shorter crop"
            )
        dropped = len(waves) - len(keep)
        if dropped:
            log.warning("CropDataset: dropped %d of %d utterances shorter than %d samples",
                        dropped, len(waves), shortest)
        self.n_padded = sum(1 for i in keep if waves[i].shape[0] < crop_samples)
        self.waves = [waves[i] for i in keep]
        self.ids = [ids[i] for i in keep] if ids is not None else [str(i) for i in keep]
        self.n_dropped = dropped
        self.crop_samples = int(crop_samples)
        self.seed = int(seed)
        self.augment = augment
        per_utt = np.array([-(-w.shape[0] // crop_samples) for w in self.waves], dtype=np.int64)
        self.owner = np.repeat(np.arange(len(self.waves)), per_utt)
        self.epoch = 0

    @classmethod
    def from_spec(
        cls,
        spec: str | Path,
        crop_seconds: float,
        seed: int = 0,
        augment: Augmentation = Augmentation(),
        sample_rate: int = SAMPLE_RATE,
        limit: int | None = None,
        pad_short: bool = False,
    ) -> "CropDataset":
        """Load a dataset (see `load_utterances`) and crop it to `crop_seconds` seconds."""
        if crop_seconds <= 0:
            raise ValueError(f"crop_seconds must be > 0, got {crop_seconds}")
        waves, ids = load_utterances(spec, sample_rate=sample_rate, limit=limit)
        return cls(waves, round(crop_seconds * sample_rate), seed=seed, augment=augment, ids=ids, pad_short=pad_short)

    @property
    def total_samples(self) -> int:
        """Number of audio samples held (after dropping short utterances)."""
        return int(sum(w.shape[0] for w in self.waves))

    def __len__(self) -> int:
        return int(self.owner.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the random draw used by `__getitem__` (call it like DistributedSampler's)."""
        self.epoch = int(epoch)

    def crop(self, index: int, draw: int) -> torch.Tensor:
        """Item `index` of random draw `draw`, as float32 [1, crop_samples]."""
        return self.crop_with_length(index, draw)[0]

    def crop_with_length(self, index: int, draw: int) -> tuple[torch.Tensor, int]:
        """Item `index` of random draw `draw`: (float32 [1, crop_samples], number of real
        samples; less than crop_samples only for a padded short utterance, whose padding
        stays exactly zero: augmentation touches the real samples only)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for CropDataset of {len(self)} items")
        rng = np.random.default_rng([self.seed, int(draw), int(index)])
        wav = self.waves[int(self.owner[index])]
        if wav.shape[0] < self.crop_samples:
            piece = np.zeros(self.crop_samples, dtype=np.float32)
            piece[: wav.shape[0]] = self.augment(wav, rng)
            return torch.from_numpy(piece).unsqueeze(0), int(wav.shape[0])
        start = int(rng.integers(0, wav.shape[0] - self.crop_samples + 1))
        piece = self.augment(wav[start:start + self.crop_samples], rng)
        return torch.from_numpy(piece).unsqueeze(0), self.crop_samples

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.crop(index, self.epoch)

    def batch(self, indices: list[int] | np.ndarray, draw: int) -> torch.Tensor:
        """Stack items into a batch: float32 [B, 1, crop_samples]."""
        return torch.stack([self.crop(int(i), draw) for i in indices])

    def batch_with_lengths(self, indices: list[int] | np.ndarray, draw: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Items as a batch with their real lengths: (float32 [B, 1, crop_samples], int64 [B])."""
        items = [self.crop_with_length(int(i), draw) for i in indices]
        return torch.stack([w for w, _ in items]), torch.tensor([n for _, n in items], dtype=torch.int64)


class StepBatches:
    """Which items each rank trains on at each step: a pure function of the step.

    The items of all ranks at one step form one global batch of `batch_size * world_size`
    items taken in order from a seeded permutation of the dataset (a new permutation per
    pass; the tail of a pass that does not fill a global batch is skipped). Rank r takes
    the r-th `batch_size` slice. Because nothing is iterated, resuming at step s needs no
    replay, and DDP ranks never overlap.

    Args:
        n_items: dataset length.
        batch_size: items per rank per step.
        seed: base seed of the permutations.
        rank, world_size: this process's DDP rank and the number of ranks.

    Raises:
        ValueError: if one global batch does not fit in the dataset.
    """

    def __init__(self, n_items: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"invalid batch_size={batch_size}, rank={rank}, world_size={world_size}")
        global_batch = batch_size * world_size
        if global_batch > n_items:
            raise ValueError(
                f"global batch {global_batch} (batch_size {batch_size} x {world_size} ranks) exceeds the "
                f"{n_items} items of the dataset; lower the batch size or the crop length"
            )
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.steps_per_pass = n_items // global_batch

    def indices(self, step: int) -> np.ndarray:
        """Dataset indices [batch_size] of this rank at `step` (0-based)."""
        p, k = divmod(int(step), self.steps_per_pass)
        perm = np.random.default_rng([self.seed, 7919, p]).permutation(self.n_items)
        start = (k * self.world_size + self.rank) * self.batch_size
        return perm[start:start + self.batch_size]
