"""The paper's PyTorch network (Appendix B), for benchmarks and weight exchange. Needs ``torch``.

The layer names (conv1..conv12, fc1..fc3) are those of Appendix B, so a state_dict of the original
code loads here and in ``torch_weights.import_torch_state_dict``.
"""

from __future__ import annotations

from apnet_tf.constants import CONV_FILTERS, CONV_KERNEL, DENSE_UNITS, PAPER_DROPOUT

__all__ = ["apnet_network"]


def apnet_network(num_layers: int = 1, num_targets: int = 3, drop_p: float = PAPER_DROPOUT):
    """Build Appendix B's ``APOGEE_Net``: input (B, 1, 8575), output (B, 3) standardised."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class APOGEENet(nn.Module):
        def __init__(self):
            super().__init__()
            c_in = num_layers
            for i, c_out in enumerate(CONV_FILTERS, start=1):
                setattr(self, f"conv{i}", nn.Conv1d(c_in, c_out, CONV_KERNEL, padding=1))
                c_in = c_out
            self.fc1 = nn.Linear(64 * 133 * 1, DENSE_UNITS)
            self.fc1_dropout = nn.Dropout(p=drop_p)
            self.fc2 = nn.Linear(DENSE_UNITS, DENSE_UNITS)
            self.fc3 = nn.Linear(DENSE_UNITS, num_targets)

        def forward(self, x):
            for i in range(1, len(CONV_FILTERS) + 1, 2):
                a, b = getattr(self, f"conv{i}"), getattr(self, f"conv{i + 1}")
                x = F.max_pool1d(F.relu(b(F.relu(a(x)))), 2)
            x = torch.flatten(x, 1)
            x = F.relu(self.fc1_dropout(self.fc1(x)))
            x = F.relu(self.fc1_dropout(self.fc2(x)))
            return self.fc3(x)

    return APOGEENet()
