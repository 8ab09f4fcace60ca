"""fastreg: adversarial filter regularization for small-data CNNs."""
__version__ = "0.1.0"

from .bank import DEFAULT_BANK, KernelBank, packaged_bank  # noqa: E402
from .chain import L2SP, chain_init, finetune_init, load_sources  # noqa: E402
from .discriminator import Discriminator  # noqa: E402
from .init import init_from_bank  # noqa: E402
from .regularizer import AdversarialRegularizer  # noqa: E402
from .transfer import TransferMap, transfer_init  # noqa: E402
from .vae import VAEPrior, vae_prior  # noqa: E402

__all__ = ["AdversarialRegularizer", "DEFAULT_BANK", "Discriminator", "KernelBank", "L2SP", "chain_init",
           "finetune_init", "init_from_bank", "load_sources", "packaged_bank", "TransferMap", "transfer_init",
           "VAEPrior", "vae_prior", "__version__"]
