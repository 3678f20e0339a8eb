"""ECAPA-TDNN gender classifier, parameter-compatible with ``JaesungHuh/voice-gender-classifier``.

The layout follows the public model (Desplanques et al. 2020, ECAPA-TDNN; the
voice-gender-classifier head adds ``fc7`` with two outputs, index 0 = male,
1 = female). Every parameter and buffer name matches the public
``model.safetensors`` so it loads with ``strict=True``; the widths are
configurable so the project can ship a much smaller model with the same names.

Front end (:class:`LogMelFrontEnd`, no learnable parameters, nothing in the
state dict): pre-emphasis ``y[n] - 0.97 y[n-1]`` (reflect-padded by one sample),
centred STFT (``n_fft=512``, 400-sample periodic Hamming window = 25 ms, hop 160
= 10 ms, reflect padding), power spectrum, 80 HTK mel bands 20-7600 Hz without
area normalisation, ``log(mel + 1e-6)`` and per-band mean subtraction over time.
This is numerically the same as the public code's
``torchaudio.transforms.MelSpectrogram`` call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from pipeline.frontends import ECAPA_FRONTEND

#: Front-end parameters (also written to the model folder's metadata.json); the numpy twin of
#: :class:`LogMelFrontEnd` for the ONNX path is :func:`pipeline.frontends.ecapa_log_mel`.
FRONTEND_PARAMS: dict = ECAPA_FRONTEND


class LogMelFrontEnd(nn.Module):
    """Waveform -> mean-normalised log mel filterbank (no parameters, non-persistent buffers).

    Input ``[batch, samples]`` float at 16 kHz; output ``[batch, 80, frames]``
    with ``frames = samples // 160 + 1``.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        f_min: float = 20.0,
        f_max: float = 7600.0,
        n_mels: int = 80,
        pre_emphasis: float = 0.97,
    ) -> None:
        super().__init__()
        import torchaudio

        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.register_buffer(
            "emphasis_filter", torch.tensor([[[-pre_emphasis, 1.0]]]), persistent=False
        )
        self.register_buffer(
            "window", torch.hamming_window(win_length, periodic=True), persistent=False
        )
        # [n_fft // 2 + 1, n_mels], HTK mel scale, no Slaney area normalisation.
        fbank = torchaudio.functional.melscale_fbanks(
            n_freqs=n_fft // 2 + 1,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            sample_rate=sample_rate,
            norm=None,
            mel_scale="htk",
        )
        self.register_buffer("mel_fbank", fbank, persistent=False)

    def mel_power(self, waveform: torch.Tensor) -> torch.Tensor:
        """Pre-emphasised mel power spectrogram ``[batch, n_mels, frames]`` of ``[batch, samples]``."""
        x = F.pad(waveform.unsqueeze(1), (1, 0), mode="reflect")
        x = F.conv1d(x, self.emphasis_filter).squeeze(1)
        spec = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # [batch, freqs, frames]
        return torch.matmul(power.transpose(1, 2), self.mel_fbank).transpose(1, 2)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """``log(mel_power + 1e-6)`` without mean normalisation, ``[batch, n_mels, frames]``."""
        return torch.log(self.mel_power(waveform) + 1e-6)

    @staticmethod
    def normalise(log_mel: torch.Tensor) -> torch.Tensor:
        """Subtract each band's mean over time (last axis)."""
        return log_mel - log_mel.mean(dim=-1, keepdim=True)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.normalise(self.log_mel(waveform))


class SEModule(nn.Module):
    """Squeeze-and-excitation over channels: ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, channels: int, bottleneck: int = 128) -> None:
        super().__init__()
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool1d(1),
            nn.Conv1d(channels, bottleneck, kernel_size=1, padding=0),
            nn.ReLU(),
            nn.Conv1d(bottleneck, channels, kernel_size=1, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x)


class Bottle2neck(nn.Module):
    """Res2Net block with dilated convolutions and SE: ``[B, inplanes, T] -> [B, planes, T]``.

    The 1x1 input convolution's output is split into ``scale`` groups of
    ``width = planes // scale`` channels; groups 1..scale-1 pass through a
    hierarchy of dilated convolutions, the last group is passed through as is.
    """

    def __init__(
        self, inplanes: int, planes: int, kernel_size: int, dilation: int, scale: int = 8
    ) -> None:
        super().__init__()
        width = planes // scale
        self.width = width
        self.nums = scale - 1
        self.conv1 = nn.Conv1d(inplanes, width * scale, kernel_size=1)
        self.bn1 = nn.BatchNorm1d(width * scale)
        padding = (kernel_size // 2) * dilation
        self.convs = nn.ModuleList(
            nn.Conv1d(width, width, kernel_size=kernel_size, dilation=dilation, padding=padding)
            for _ in range(self.nums)
        )
        self.bns = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(self.nums))
        self.conv3 = nn.Conv1d(width * scale, planes, kernel_size=1)
        self.bn3 = nn.BatchNorm1d(planes)
        self.relu = nn.ReLU()
        self.se = SEModule(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        out = self.bn1(self.relu(self.conv1(x)))
        groups = torch.split(out, self.width, dim=1)
        pieces: list[torch.Tensor] = []
        sp = groups[0]
        for i in range(self.nums):
            sp = groups[i] if i == 0 else sp + groups[i]
            sp = self.bns[i](self.relu(self.convs[i](sp)))
            pieces.append(sp)
        pieces.append(groups[self.nums])
        out = torch.cat(pieces, dim=1)
        out = self.bn3(self.relu(self.conv3(out)))
        return self.se(out) + residual


class ECAPAGender(nn.Module, PyTorchModelHubMixin):
    """ECAPA-TDNN with a two-way (male, female) head.

    Args:
        C: channels of the three Res2Net blocks (public model: 1024).
        mfa_channels: channels of the multi-layer feature aggregation ``layer4``
            (public: 1536); the pooled statistics have ``2 * mfa_channels``.
        attention_channels: bottleneck of the attentive statistics pooling (public: 256).
        embedding_dim: size of the ``fc6`` embedding (public: 192).

    The defaults reproduce the public ``JaesungHuh/voice-gender-classifier``
    layout; its ``model.safetensors`` loads with ``strict=True``. Logits index 0
    is ``male``, 1 is ``female``.
    """

    def __init__(
        self,
        C: int = 1024,
        mfa_channels: int = 1536,
        attention_channels: int = 256,
        embedding_dim: int = 192,
    ) -> None:
        super().__init__()
        self.frontend = LogMelFrontEnd()
        n_mels = self.frontend.n_mels
        self.conv1 = nn.Conv1d(n_mels, C, kernel_size=5, stride=1, padding=2)
        self.relu = nn.ReLU()
        self.bn1 = nn.BatchNorm1d(C)
        self.layer1 = Bottle2neck(C, C, kernel_size=3, dilation=2, scale=8)
        self.layer2 = Bottle2neck(C, C, kernel_size=3, dilation=3, scale=8)
        self.layer3 = Bottle2neck(C, C, kernel_size=3, dilation=4, scale=8)
        self.layer4 = nn.Conv1d(3 * C, mfa_channels, kernel_size=1)
        self.attention = nn.Sequential(
            nn.Conv1d(3 * mfa_channels, attention_channels, kernel_size=1),
            nn.ReLU(),
            nn.BatchNorm1d(attention_channels),
            nn.Tanh(),
            nn.Conv1d(attention_channels, mfa_channels, kernel_size=1),
            nn.Softmax(dim=2),
        )
        self.bn5 = nn.BatchNorm1d(2 * mfa_channels)
        self.fc6 = nn.Linear(2 * mfa_channels, embedding_dim)
        self.bn6 = nn.BatchNorm1d(embedding_dim)
        self.fc7 = nn.Linear(embedding_dim, 2)

    def logfbank(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` at 16 kHz -> mean-normalised log-mel ``[batch, 80, frames]``."""
        return self.frontend(waveform)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[batch, 80, frames]`` -> embedding ``[batch, embedding_dim]`` (after bn6 and ReLU)."""
        x = self.bn1(self.relu(self.conv1(features)))
        x1 = self.layer1(x)
        x2 = self.layer2(x + x1)
        x3 = self.layer3(x + x1 + x2)
        x = self.relu(self.layer4(torch.cat((x1, x2, x3), dim=1)))
        frames = x.size(-1)
        mean = torch.mean(x, dim=2, keepdim=True)
        std = torch.sqrt(torch.var(x, dim=2, keepdim=True).clamp(min=1e-4))
        context = torch.cat((x, mean.repeat(1, 1, frames), std.repeat(1, 1, frames)), dim=1)
        weights = self.attention(context)  # [batch, mfa_channels, frames], sums to 1 over time
        mu = torch.sum(x * weights, dim=2)
        sg = torch.sqrt((torch.sum(x.square() * weights, dim=2) - mu.square()).clamp(min=1e-4))
        x = self.bn5(torch.cat((mu, sg), dim=1))
        return self.relu(self.bn6(self.fc6(x)))

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[batch, 80, frames]`` (mean-normalised) -> logits ``[batch, 2]``."""
        return self.fc7(self.embed(features))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveforms ``[batch, samples]`` (16 kHz float) -> logits ``[batch, 2]`` (male, female)."""
        return self.forward_features(self.logfbank(waveform))
