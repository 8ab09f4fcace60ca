"""fastreg: adversarial filter regularization for small-data CNNs."""
__version__ = "0.1.0"

from .bank import DEFAULT_BANK, KernelBank, packaged_bank  # noqa: E402
from .discriminator import Discriminator  # noqa: E402
from .init import init_from_bank  # noqa: E402
from .regularizer import AdversarialRegularizer  # noqa: E402

__all__ = ["AdversarialRegularizer", "DEFAULT_BANK", "Discriminator", "KernelBank", "init_from_bank",
           "packaged_bank", "__version__"]
