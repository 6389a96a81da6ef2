import torch
from torch import nn

from .. import register
from ..framing import filterbank_kernel, filterbank_stride
from ..stft_masking import STFTMaskModel


class BiLSTMMasker(nn.Module):
    """Log-magnitude frames -> stacked BiLSTM -> sigmoid voice and noise masks per bin."""

    def __init__(self, n_freq: int, hidden: int, n_layers: int, dropout: float):
        super().__init__()
        # Normalising the log-magnitude per bin makes the masker blind to the input's gain.
        self.norm = nn.LayerNorm(n_freq)
        self.rnn = nn.LSTM(n_freq, hidden, num_layers=n_layers, dropout=dropout if n_layers > 1 else 0.0,
                           batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, 2 * n_freq)

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        b, f, t = magnitude.shape
        feats = torch.log(magnitude + 1e-6).transpose(1, 2)
        feats = feats - feats.mean(dim=(1, 2), keepdim=True)
        h, _ = self.rnn(self.norm(feats))
        return torch.sigmoid(self.out(h)).view(b, t, 2, f).permute(0, 2, 3, 1)


@register("lstm_mask", "seq2seq BiLSTM mask estimator on the STFT magnitude (voice and noise masks)", default=True,
          frame_stride=filterbank_stride, min_length=filterbank_kernel)
def build(sample_rate: int, win_ms: float = 32.0, hop_ms: float = 8.0, hidden: int = 600,
          n_layers: int = 3, dropout: float = 0.3):
    model = STFTMaskModel(nn.Identity(), sample_rate, win_ms, hop_ms)
    model.masker = BiLSTMMasker(model.n_freq, hidden, n_layers, dropout)
    return model
