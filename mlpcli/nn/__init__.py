"""The network: gates with hand-written backward passes, losses, the MLP, optimizers and gradient checks."""

from mlpcli.nn.gradcheck import GradCheckRow, check_gates, check_model
from mlpcli.nn.layers import ACTIVATIONS
from mlpcli.nn.losses import LOSSES
from mlpcli.nn.model import MLP
from mlpcli.nn.optim import OPTIMIZERS, learning_rate

__all__ = ["ACTIVATIONS", "LOSSES", "MLP", "OPTIMIZERS", "GradCheckRow", "check_gates", "check_model",
           "learning_rate"]
