"""fastreg: adversarial filter regularization for small-data CNNs."""
__version__ = "0.1.0"

from .discriminator import Discriminator  # noqa: E402

__all__ = ["Discriminator", "__version__"]
