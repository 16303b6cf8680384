"""The KD chain engine: models, data, KD methods and `train_chain`; usable without Ray or Optuna."""

from trainables.chain import train_chain
from trainables.config import ChainConfig
from trainables.divergence import HopDiverged
from trainables.results import ChainResult, HopResult
from trainables.store import MemoryStore, ModelStore, StoredHop
from trainables.typed import InputError

__all__ = ["ChainConfig", "ChainResult", "HopDiverged", "HopResult", "InputError", "MemoryStore", "ModelStore",
           "StoredHop", "train_chain"]
